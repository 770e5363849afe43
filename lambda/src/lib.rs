//! The AWS Lambda drivers (in progress).

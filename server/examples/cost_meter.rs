//! Prints the cost meter's table: per operation, DynamoDB requests and request units, SQS
//! requests, Lambda invocations and stream records, measured through the real adapters against
//! moto (see `tests/cost_meter.rs`, whose measuring code this shares), and the cost per
//! million operations at AWS list prices.
//!
//! ```sh
//! .tools/venv/bin/python scripts/moto_server.py 127.0.0.1 5077 &
//! MESSAGING_TEST_MOTO_ENDPOINT=http://127.0.0.1:5077 \
//!   cargo run -p messaging-server --example cost_meter [-- HISTORY]
//! ```

// The measuring code lives with its test, which asserts that history does not change it.
#[path = "../tests/cost_meter.rs"]
#[allow(dead_code)]
mod meter;

use meter::{Cost, Meter};

/// us-east-1 list prices in US dollars (checked 2026-11-24; see BENCHMARKS.md).
mod price {
    /// DynamoDB on-demand, per write request unit.
    pub const WRITE_UNIT: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand, per read request unit.
    pub const READ_UNIT: f64 = 0.125 / 1e6;
    /// SQS FIFO queue, per request (64 KB chunk).
    pub const SQS_FIFO_REQUEST: f64 = 0.50 / 1e6;
    /// Lambda, per invocation.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// Lambda arm64, per GB-second.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// API Gateway HTTP API, per request (first 300 million a month).
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
}

/// Every function's memory in the template (`MemorySize`; scripts/lambda_runtime_test.py
/// measures their peaks at 13 to 19 MB).
const MEMORY_GB: f64 = 0.125;

/// Stated Lambda durations per invocation (not measured here: moto's timings say nothing about
/// AWS; the functions wait on DynamoDB and SQS far more than they compute).
fn lambda_gb_seconds(function: &str, invocations: u64, cost: &Cost) -> f64 {
    let seconds = match function {
        // The HTTP functions: 20 ms.
        "http" => 0.020,
        // The processors: 20 ms, plus 10 ms per 16 recipients delivered at once.
        "processor" => {
            let deliveries = cost.stream_records.saturating_sub(2) as f64;
            0.020 + 0.010 * (deliveries / 16.0).ceil()
        }
        // The projector: 50 ms per batch of up to 100 records.
        "projector" => 0.050,
        // The notifier: 20 ms per batch.
        _ => 0.020,
    };
    invocations as f64 * MEMORY_GB * seconds
}

/// Dollars for one operation: (DynamoDB, SQS, Lambda, API Gateway).
fn dollars(cost: &Cost) -> [f64; 4] {
    let dynamodb = cost.read_units * price::READ_UNIT + cost.write_units * price::WRITE_UNIT;
    let sqs = cost.sqs_requests() as f64 * price::SQS_FIFO_REQUEST;
    let lambda: f64 = cost
        .invocations
        .iter()
        .map(|(function, n)| {
            *n as f64 * price::LAMBDA_REQUEST
                + lambda_gb_seconds(function, *n, cost) * price::LAMBDA_GB_SECOND
        })
        .sum();
    let api = cost.invocations.get("http").copied().unwrap_or(0) as f64 * price::HTTP_API_REQUEST;
    [dynamodb, sqs, lambda, api]
}

#[tokio::main]
async fn main() {
    let history: u64 = std::env::args()
        .nth(1)
        .and_then(|h| h.parse().ok())
        .unwrap_or(10);
    eprintln!("measuring with {history} messages of history (moto)...");
    let costs = Meter::measure(history, &[10, 100, 1000]).await;
    println!(
        "| operation | DynamoDB requests | RRU | WRU | SQS requests | Lambda invocations | stream records | $ per million: DynamoDB | SQS | Lambda | API GW | total |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, cost) in &costs {
        let [d, s, l, a] = dollars(cost);
        let invocations: Vec<String> = cost
            .invocations
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect();
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** |",
            cost.dynamodb_requests(),
            cost.read_units,
            cost.write_units,
            cost.sqs_requests(),
            invocations.join(", "),
            cost.stream_records,
            d * 1e6,
            s * 1e6,
            l * 1e6,
            a * 1e6,
            (d + s + l + a) * 1e6,
        );
    }
    println!();
    for (name, cost) in &costs {
        println!("{name}: {:?}", cost.requests);
    }
}

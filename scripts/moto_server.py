"""moto server for the tests, with DynamoDB requests serialised.

moto's TransactWriteItems snapshots every table it touches and restores the snapshot when the
transaction is cancelled. Under concurrent requests that restore silently undoes writes other
requests made in between (lost claims, lost events), which real DynamoDB never does. Handling
one DynamoDB request at a time removes that emulator race without changing any semantics the
tests rely on (DynamoDB requests are atomic anyway). SQS and DynamoDB Streams requests, which
the pollers send continuously, stay concurrent.

Usage: moto_server.py HOST PORT
"""

import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


class Serialised:
    """WSGI middleware running DynamoDB requests under one lock."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_20120810."):
            return self.app(environ, start_response)
        with self.lock:
            # moto's responses are complete byte strings; materialise them inside the lock.
            return list(self.app(environ, start_response))


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host,
        port,
        Serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()

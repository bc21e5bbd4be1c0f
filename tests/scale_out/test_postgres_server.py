"""The throw-away PostgreSQL server of the scale-out tests starts even when its picked port is
taken before the server binds it (another worker's server, any process)."""

import socket

import psycopg
import pytest

from tests.scale_out.postgres import PostgresServer

pytestmark = pytest.mark.scale_out


def test_server_moves_to_a_fresh_port_when_its_port_was_taken():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = PostgresServer()
        server.port = taken = squatter.getsockname()[1]
        server.start()
        try:
            assert server.port != taken
            with psycopg.connect(server.url()) as connection:
                assert connection.execute("select 1").fetchone() == (1,)
        finally:
            server.stop()

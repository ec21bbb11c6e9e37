"""MultiplexedRedis against real redis-server processes (the session one, and private ones we kill -9)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from stackwright.local.backing import LocalRedis
from stackwright.local.ports import free_port, port_in_use
from stackwright.runtime.redis_mux import MultiplexedRedis, NoScriptError, ResponseError, from_url

pytestmark = pytest.mark.integration


class OwnRedis:
    """A redis-server of our own that a test may kill -9 and restart on the same port and data directory."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.local = LocalRedis(data_dir, free_port())
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.local.port

    @property
    def url(self) -> str:
        return self.local.url

    def start(self) -> None:
        self.proc = subprocess.Popen([*self.local.command(), *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not port_in_use(self.port):
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def mux(redis_server: LocalRedis) -> AsyncIterator[MultiplexedRedis]:
    client = MultiplexedRedis(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def pyredis(redis_server: LocalRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


def key(name: str) -> str:
    return f"mux-test:{uuid.uuid4().hex}:{name}"


# -- helpers behave like redis-py ------------------------------------------------------------------------------


async def test_helpers_match_redis_py(mux: MultiplexedRedis, pyredis: aioredis.Redis) -> None:
    a, b = key("a"), key("b")  # the same operations on a key of ours and a key of redis-py's
    assert await mux.ping() is True
    assert await mux.ping() == await pyredis.ping()
    for client, k in ((mux, a), (pyredis, b)):
        assert await client.get(k) is None
        assert await client.set(k, "v1") is True
        assert await client.set(k, "v2", nx=True) is None
        assert await client.set(k + "x", "v", xx=True) is None
        assert await client.set(k, "v3", xx=True) is True
        assert await client.get(k) == "v3"
        assert await client.set(k + "ex", 1, ex=100) is True
        assert await client.set(k + "px", 1.5, px=100_000) is True
        assert await client.exists(k, k + "ex", k + "missing") == 2
        assert await client.expire(k, 100) is True
        assert await client.expire(k + "missing", 100) is False
        assert await client.incr(k + "n") == 1
        assert await client.incr(k + "n") == 2
        assert await client.incr(k + "n", 5) == 7
        assert await client.hincrby(k + "h", "f", 5) == 5
        assert await client.hincrby(k + "h", "g", -2) == -2
        assert await client.hgetall(k + "h") == {"f": "5", "g": "-2"}
        assert await client.hgetall(k + "nohash") == {}
        assert await client.sadd(k + "s", "x", "y", "x") == 2
        assert await client.sadd(k + "s", "y", "z") == 1
        assert await client.scard(k + "s") == 3
        assert await client.scard(k + "nos") == 0
        assert await client.xlen(k + "st") == 0
        assert await client.delete(k, k + "ex", k + "missing") == 2
    for suffix in ("px", "n"):
        assert await mux.get(a + suffix) == await pyredis.get(b + suffix)
    assert await pyredis.ttl(a + "px") == await pyredis.ttl(b + "px") == 100


async def test_xadd(mux: MultiplexedRedis, pyredis: aioredis.Redis) -> None:
    stream = key("stream")
    first = await mux.xadd(stream, {"poll": "p1", "n": 3, "raw": "café".encode()})
    assert isinstance(first, str) and "-" in first
    assert await pyredis.xrange(stream) == [(first, {"poll": "p1", "n": "3", "raw": "café"})]
    assert await mux.xadd(stream, {"a": "b"}, id="99999999999999-1") == "99999999999999-1"
    for _ in range(20):
        await mux.xadd(stream, {"a": "b"}, maxlen=5, approximate=False)
    assert await mux.xlen(stream) == 5 == await pyredis.xlen(stream)
    await mux.xadd(stream, {"a": "b"}, maxlen=3)  # MAXLEN ~: trimming is lazy, but it is accepted


def mux_url(client: MultiplexedRedis) -> str:
    return f"redis://{client.host}:{client.port}/{client.db}"


async def test_values_are_encoded_like_redis_py(mux: MultiplexedRedis, pyredis: aioredis.Redis) -> None:
    for value in ("héllo", b"\x00bin\xff", 42, -7, 0.1, 1e20, 1 / 3):
        a, b = key("a"), key("b")
        await mux.set(a, value)
        await pyredis.set(b, value)
        raw = aioredis.Redis.from_url(mux_url(mux))
        assert await raw.get(a) == await raw.get(b), value
        await raw.aclose()


async def test_decode_responses_false_returns_bytes(redis_server: LocalRedis) -> None:
    client = MultiplexedRedis(redis_server.url, decode_responses=False)
    try:
        k = key("bytes")
        await client.set(k, b"\xff\x00")
        assert await client.get(k) == b"\xff\x00"
        await client.hincrby(k + "h", "f", 1)
        assert await client.hgetall(k + "h") == {b"f": b"1"}
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_invalid_utf8_fails_only_that_command(mux: MultiplexedRedis) -> None:
    k = key("bin")
    await mux.set(k, b"\x00\xff")
    results = await asyncio.gather(mux.ping(), mux.get(k), mux.execute("ECHO", "after"), return_exceptions=True)
    assert results[0] is True and isinstance(results[1], UnicodeDecodeError) and results[2] == "after"


async def test_eval_and_evalsha(mux: MultiplexedRedis) -> None:
    assert await mux.eval("return {KEYS[1], ARGV[1], 7}", 1, "k", "v") == ["k", "v", 7]
    sha = await mux.execute("SCRIPT", "LOAD", "return ARGV[1]")
    assert await mux.evalsha(sha, 0, "hi") == "hi"
    assert await mux.eval("return nil", 0) is None


async def test_script_falls_back_to_eval_after_script_flush(mux: MultiplexedRedis, pyredis: aioredis.Redis) -> None:
    counter = key("counter")
    script = mux.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(keys=[counter], args=[2]) == 2  # first run: NOSCRIPT -> EVAL
    assert await script(keys=[counter], args=[3]) == 5  # cached now: EVALSHA
    await pyredis.script_flush()
    with pytest.raises(NoScriptError, match="NOSCRIPT"):
        await mux.evalsha(script.sha, 1, counter, 1)
    assert await script(keys=[counter], args=[1]) == 6
    assert script.sha == (await pyredis.script_load(script.body))


# -- pipelining --------------------------------------------------------------------------------------------------


async def test_1000_concurrent_commands_reach_the_right_callers(mux: MultiplexedRedis,
                                                                pyredis: aioredis.Redis) -> None:
    prefix = key("many")
    keys = [f"{prefix}:{i}" for i in range(1000)]

    async def set_then_get(i: int) -> str | None:
        await mux.set(keys[i], f"value-{i}")
        return await mux.get(keys[i])

    results = await asyncio.gather(*(set_then_get(i) for i in range(1000)))
    assert results == [f"value-{i}" for i in range(1000)]
    assert await pyredis.get(keys[517]) == "value-517"

    counter = prefix + ":counter"
    counts = await asyncio.gather(*(mux.incr(counter) for _ in range(1000)))
    assert sorted(counts) == list(range(1, 1001))
    assert counts == list(range(1, 1001))  # issued in order on one connection, so answered in order


async def test_commands_in_one_tick_are_written_together(mux: MultiplexedRedis) -> None:
    await mux.connect()
    conn = mux._conn
    assert conn is not None and conn.transport is not None
    writes: list[bytes] = []
    real_write = conn.transport.write

    def counting_write(data: bytes) -> None:
        writes.append(bytes(data))
        real_write(data)

    conn.transport.write = counting_write  # type: ignore[method-assign]
    prefix = key("tick")
    assert await asyncio.gather(*(mux.incr(f"{prefix}:{i}") for i in range(100))) == [1] * 100
    assert len(writes) == 1 and writes[0].count(b"INCR") == 100


async def test_error_reply_raises_and_connection_keeps_working(mux: MultiplexedRedis) -> None:
    k = key("list")
    await mux.execute("LPUSH", k, "x")
    with pytest.raises(ResponseError, match=r"^WRONGTYPE"):
        await mux.get(k)
    with pytest.raises(ResponseError, match="unknown command"):
        await mux.execute("NOSUCHCOMMAND")
    # errors in the middle of a pipelined batch do not shift the others' replies
    good = key("good")
    await mux.set(good, "ok")
    results = await asyncio.gather(*(mux.get(k if i % 3 == 0 else good) for i in range(30)), return_exceptions=True)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, ResponseError)
        else:
            assert result == "ok"
    assert await mux.ping() is True


async def test_cancelled_callers_do_not_shift_replies(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url)
    try:
        await client.set("k", "v")
        slow = asyncio.ensure_future(client.execute("DEBUG", "SLEEP", "0.3"))
        behind = [asyncio.ensure_future(client.execute("ECHO", str(i))) for i in range(10)]
        await asyncio.sleep(0.1)
        for task in behind[::2]:
            task.cancel()
        await slow
        assert [await t for t in behind[1::2]] == [str(i) for i in range(1, 10, 2)]
        assert await client.get("k") == "v"
    finally:
        await client.aclose()


# -- connecting, AUTH and SELECT -----------------------------------------------------------------------------


async def test_select_db_from_url(redis_server: LocalRedis) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/5"
    client = MultiplexedRedis.from_url(url)
    db5 = aioredis.Redis.from_url(url, decode_responses=True)
    db0 = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        k = key("db5")
        await client.set(k, "five")
        assert await db5.get(k) == "five"
        assert await db0.get(k) is None
    finally:
        await client.aclose()
        await db5.aclose()
        await db0.aclose()


async def test_auth_from_url(tmp_path: Path) -> None:
    server = OwnRedis(tmp_path / "redis", "--requirepass", "s3cret")
    server.start()
    try:
        admin = aioredis.Redis(port=server.port, password="s3cret", decode_responses=True)
        await admin.execute_command("ACL", "SETUSER", "alice", "on", ">al%ce pw", "~*", "+@all")
        await admin.set("shared", "x")
        for url in (f"redis://:s3cret@127.0.0.1:{server.port}/0",
                    f"redis://default:s3cret@127.0.0.1:{server.port}",
                    f"redis://alice:al%25ce%20pw@127.0.0.1:{server.port}/3"):
            client = from_url(url)
            await client.connect()
            assert await client.get("shared") == ("x" if not url.endswith("/3") else None)
            await client.set("mine", url)
            await client.aclose()
        db3 = aioredis.Redis(port=server.port, password="s3cret", db=3, decode_responses=True)
        assert await db3.get("mine") == f"redis://alice:al%25ce%20pw@127.0.0.1:{server.port}/3"
        await db3.aclose()

        wrong = MultiplexedRedis(f"redis://:nope@127.0.0.1:{server.port}/0", reconnect_for=0.3)
        with pytest.raises(ConnectionError, match=r"WRONGPASS|invalid"):
            await wrong.get("shared")
        await wrong.aclose()
        await admin.aclose()
    finally:
        server.kill()


def test_url_forms() -> None:
    client = MultiplexedRedis("redis://127.0.0.1:6390/4")
    assert (client.host, client.port, client.db, client._auth) == ("127.0.0.1", 6390, 4, ())
    assert MultiplexedRedis("redis://localhost").port == 6379
    assert MultiplexedRedis("redis://:pw@h:1/0")._auth == ("pw",)
    assert MultiplexedRedis("redis://u:pw@h:1/0")._auth == ("u", "pw")
    assert MultiplexedRedis("rediss://:tok@h:1/0")._ssl is not None  # TLS (ElastiCache in-transit encryption)
    assert MultiplexedRedis("redis://h:1/0")._ssl is None
    with pytest.raises(ValueError):
        MultiplexedRedis("unix:///tmp/redis.sock")


# -- refusing commands that would block the shared connection --------------------------------------------------


async def test_blocking_and_connection_state_commands_are_rejected(mux: MultiplexedRedis) -> None:
    for args in (("BLPOP", "q", 0), ("blpop", "q", 0), (b"BRPOP", "q", 1), ("SUBSCRIBE", "ch"),
                 ("XREAD", "block", 0, "STREAMS", "s", "$"), ("XREADGROUP", "GROUP", "g", "c", "BLOCK", 100,
                                                              "STREAMS", "s", ">"),
                 ("MULTI",), ("SELECT", 1), ("WATCH", "k")):
        with pytest.raises(ValueError):
            await mux.execute(*args)
    stream = key("s")
    await mux.xadd(stream, {"a": 1})
    assert (await mux.execute("XREAD", "COUNT", 1, "STREAMS", stream, "0"))[0][0] == stream  # non-blocking is fine


# -- failures ------------------------------------------------------------------------------------------------------


async def test_kill9_fails_in_flight_commands_and_reconnects(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url, reconnect_for=5.0)
    try:
        await client.set("kept", "yes")  # appendfsync always: survives kill -9
        # DEBUG SLEEP holds the server so everything behind it is certainly in flight when it dies.
        sleeper = asyncio.ensure_future(client.execute("DEBUG", "SLEEP", "10"))
        writes = [asyncio.ensure_future(client.incr("n")) for _ in range(20)]
        read = asyncio.ensure_future(client.get("kept"))  # idempotent: re-sent after the reconnect
        await asyncio.sleep(0.3)
        own_redis.kill()
        for task in [sleeper, *writes]:
            with pytest.raises(ConnectionError):
                await task
        assert not read.done()
        own_redis.start()
        assert await asyncio.wait_for(read, 5) == "yes"
        assert await client.incr("after") == 1
        assert await client.get("n") is None  # the INCRs never ran
    finally:
        await client.aclose()


async def test_get_while_down_succeeds_when_redis_is_back_in_time(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url, reconnect_for=5.0)
    try:
        await client.set("k", "v")
        own_redis.kill()
        await asyncio.sleep(0.1)
        get = asyncio.ensure_future(client.get("k"))
        incr = asyncio.ensure_future(client.incr("n"))  # issued while down: waits for the reconnect too
        await asyncio.sleep(0.8)
        assert not get.done()
        own_redis.start()
        assert await asyncio.wait_for(get, 5) == "v"
        assert await asyncio.wait_for(incr, 5) == 1
    finally:
        await client.aclose()


async def test_write_after_a_restart_the_loop_did_not_see_goes_to_the_new_server(own_redis: OwnRedis) -> None:
    # The loop is blocked (synchronous kill + start) so the closed socket is not noticed before the next
    # command: a write must not be sent into the dead connection (it would fail, and can't be re-sent).
    client = MultiplexedRedis(own_redis.url)
    try:
        await client.set("a", "1")
        own_redis.kill()
        own_redis.start()
        assert await client.set("b", "2") is True
        assert await client.incr("n") == 1
    finally:
        await client.aclose()


async def test_down_longer_than_reconnect_for_raises_connection_error(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url, reconnect_for=1.0)
    try:
        await client.set("k", "v")
        own_redis.kill()
        for command in (client.get("k"), client.incr("n")):
            started = time.monotonic()
            with pytest.raises(ConnectionError):
                await command
            assert time.monotonic() - started < 1.0 + 2
        own_redis.start()  # and it recovers once Redis is back
        assert await client.get("k") == "v"
    finally:
        await client.aclose()


async def test_never_started_server_raises_connection_error() -> None:
    client = MultiplexedRedis(f"redis://127.0.0.1:{free_port()}/0", reconnect_for=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await client.connect()
    with pytest.raises(ConnectionError):
        await client.ping()
    assert time.monotonic() - started < 2 * 0.5 + 2
    await client.aclose()


async def test_slow_reply_times_out_and_connection_is_reopened(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url, command_timeout=0.3)
    try:
        await client.set("k", "v")
        first = client._conn
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.execute("DEBUG", "SLEEP", "1")
        assert time.monotonic() - started < 0.3 + 2
        assert await client.get("k") == "v"  # on a new connection, once the server is responsive again
        assert client._conn is not first
    finally:
        await client.aclose()


async def test_aclose_fails_pending_and_later_commands(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url)
    pending = asyncio.ensure_future(client.execute("DEBUG", "SLEEP", "0.5"))
    await asyncio.sleep(0.1)
    await client.aclose()
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        await client.get("k")
    with pytest.raises(ConnectionError):
        await client.connect()


async def test_aclose_while_waiting_for_reconnect(own_redis: OwnRedis) -> None:
    client = MultiplexedRedis(own_redis.url, reconnect_for=10.0)
    await client.ping()
    own_redis.kill()
    await asyncio.sleep(0.1)
    waiting = [asyncio.ensure_future(client.get("k")), asyncio.ensure_future(client.incr("n"))]
    await asyncio.sleep(0.3)
    await client.aclose()
    for task in waiting:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(task, 2)


async def test_rediss_speaks_tls(redis_server: LocalRedis, tmp_path: Path) -> None:
    # ElastiCache with in-transit encryption is rediss://: a TLS front (self-signed certificate) for the real server.
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(private, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    tls_seen = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls_seen.append(writer.get_extra_info("ssl_object") is not None)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", redis_server.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    client = MultiplexedRedis(f"rediss://localhost:{port}/0", ssl_context=client_ctx)
    try:
        name_tls = key("tls")
        assert await client.set(name_tls, "secret") is True
        assert await client.get(name_tls) == "secret"
        assert tls_seen == [True]
    finally:
        await client.aclose()
        server.close()


def test_only_redis_and_rediss_urls_are_multiplexed() -> None:
    from stackwright.runtime.redis_mux import supports

    assert supports("redis://127.0.0.1:6379/0") and supports("rediss://:tok@cache.example:6379")
    assert not supports("unix:///tmp/redis.sock") and not supports("sqs://?region=us-east-1")
    with pytest.raises(ValueError):
        MultiplexedRedis("unix:///tmp/redis.sock")

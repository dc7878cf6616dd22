"""Tests of the chat service: settings, the echo model, and the HTTP API on a real socket."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import main


def serve(service: main.ChatService):
    server = main.make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def service():
    svc = main.ChatService(main.Settings.from_env({"MODEL_NAME": "echo-test", "MAX_TOKENS": "64"}))
    svc.start()
    return svc


@pytest.fixture
def url(service):
    server, base = serve(service)
    yield base
    server.shutdown()
    server.server_close()


def request(url: str, path: str, body=None, method=None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_settings_defaults_and_env():
    assert main.Settings.from_env({}) == main.Settings()
    s = main.Settings.from_env(
        {"MODEL_NAME": "m", "MAX_TOKENS": "10", "TEMPERATURE": "0.2", "LOG_LEVEL": "debug", "PORT": "9000"}
    )
    assert (s.model_name, s.max_tokens, s.temperature, s.log_level, s.port) == ("m", 10, 0.2, "DEBUG", 9000)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MAX_TOKENS": "many"}, "MAX_TOKENS='many' is not a valid int"),
        ({"MAX_TOKENS": "0"}, "MAX_TOKENS=0"),
        ({"TEMPERATURE": "3"}, "TEMPERATURE=3.0"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='LOUD'"),
        ({"MODEL_BACKEND": "gpt"}, "MODEL_BACKEND='gpt'"),
        ({"MODEL_BACKEND": "openai"}, "needs MODEL_ENDPOINT"),
    ],
)
def test_settings_errors_name_the_variable(env, message):
    with pytest.raises(main.ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        main.Settings.from_env(env)


def test_echo_model_canned_and_echo():
    model = main.EchoModel(main.Settings(model_name="echo-x", max_tokens=50))
    assert model.complete([{"role": "user", "content": "Ping!"}]) == "pong"
    assert "echo-x" in model.complete([{"role": "user", "content": "hello"}])
    reply = model.complete(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "What is GitOps?"},
        ]
    )
    assert reply == 'You said: "What is GitOps?" (echo-x, turn 2)'


def test_echo_model_respects_max_tokens():
    model = main.EchoModel(main.Settings(max_tokens=3))
    assert model.complete([{"role": "user", "content": "one two three four five"}]) == 'You said: "one ...'


@pytest.mark.parametrize(
    "payload, error",
    [
        ([], "body must be a JSON object"),
        ({}, '"message" must be a non-empty string'),
        ({"message": "   "}, '"message" must be a non-empty string'),
        ({"message": "x" * 4001}, "longer than 4000"),
        ({"message": "hi", "history": {}}, '"history" must be a list'),
        ({"message": "hi", "history": [{"role": "robot", "content": "x"}]}, '"history[0]"'),
    ],
)
def test_bad_chat_requests(payload, error):
    with pytest.raises(main.BadRequest) as err:
        main.parse_chat_request(payload, "sys")
    assert error in str(err.value)


def test_chat_request_puts_system_prompt_first():
    messages = main.parse_chat_request(
        {"message": "now", "history": [{"role": "user", "content": "before"}]}, "be brief"
    )
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[0]["content"] == "be brief" and messages[-1]["content"] == "now"


def test_page_and_probes(url):
    status, headers, body = request(url, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"echo-test" in body and b'fetch("chat"' in body
    assert request(url, "/healthz")[:3:2] == (200, b'{"status": "ok"}\n')
    assert request(url, "/readyz")[:3:2] == (200, b'{"status": "ready"}\n')
    status, _, body = request(url, "/version")
    assert status == 200 and json.loads(body)["model"] == "echo-test"


def test_chat_endpoint(url):
    status, headers, body = request(url, "/chat", {"message": "What is GitOps?"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert answer["reply"] == 'You said: "What is GitOps?" (echo-test, turn 1)'
    assert answer["model"] == "echo-test"
    assert answer["usage"]["completion_tokens"] == len(answer["reply"].split())
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]


def test_chat_errors(url):
    status, _, body = request(url, "/chat", raw=b"{not json")
    assert status == 400 and "error" in json.loads(body)
    assert request(url, "/chat", {"history": []})[0] == 400
    assert request(url, "/chat", raw=b"x" * (main.MAX_BODY_BYTES + 1))[0] == 413
    status, headers, _ = request(url, "/chat")
    assert status == 405 and headers["Allow"] == "POST"
    assert request(url, "/healthz", {"message": "hi"})[0] == 405
    assert request(url, "/nope")[0] == 404


def test_draining_fails_readiness_and_chat(service, url):
    service.drain()
    assert request(url, "/readyz")[0] == 503
    assert request(url, "/chat", {"message": "hi"})[0] == 503
    assert request(url, "/healthz")[0] == 200, "liveness stays up while draining"


class FakeUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that records requests and answers in upper case."""

    seen: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeUpstream.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        answer = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": body["messages"][-1]["content"].upper()}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_openai_backend_forwards_the_conversation():
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        settings = main.Settings.from_env(
            {
                "MODEL_BACKEND": "openai",
                "MODEL_ENDPOINT": f"http://127.0.0.1:{upstream.server_address[1]}/",
                "MODEL_NAME": "llama-3.1-8b-instruct",
                "MODEL_API_KEY": "secret",
                "MAX_TOKENS": "32",
                "TEMPERATURE": "0.1",
            }
        )
        svc = main.ChatService(settings)
        svc.start()
        answer = svc.chat({"message": "hello there"})
        assert answer["reply"] == "HELLO THERE"
        seen = FakeUpstream.seen[-1]
        assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer secret"
        assert seen["body"]["model"] == "llama-3.1-8b-instruct"
        assert (seen["body"]["max_tokens"], seen["body"]["temperature"]) == (32, 0.1)
        assert seen["body"]["messages"][0]["role"] == "system"
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_unreachable_model_is_a_bad_gateway():
    # Port 9 (discard) on localhost is closed: the connection is refused at once.
    svc = main.ChatService(main.Settings(model_backend="openai", model_endpoint="http://127.0.0.1:9", request_timeout=2))
    svc.start()
    server, base = serve(svc)
    try:
        status, _, body = request(base, "/chat", {"message": "hi"})
        assert status == 502 and json.loads(body) == {"error": "the model is unavailable"}
    finally:
        server.shutdown()
        server.server_close()

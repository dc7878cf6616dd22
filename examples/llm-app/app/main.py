"""A small LLM chat service: a web page, a JSON chat API and Kubernetes probes.

Standard library only, so `python3 main.py` runs anywhere. Two model backends:

* ``echo`` (default): a stand-in model that answers from canned replies and echoes the
  prompt. It needs no GPU, no weights and no network, which keeps the example
  deployable on any cluster.
* ``openai``: forwards the conversation to an OpenAI-compatible
  ``POST {MODEL_ENDPOINT}/v1/chat/completions`` (vLLM, Ollama, llama.cpp server, ...).

Endpoints:

* ``GET /``        the chat page
* ``POST /chat``   ``{"message": "...", "history": [{"role": "user", "content": "..."}]}``
                   -> ``{"reply": "...", "model": "...", "usage": {...}}``
* ``GET /healthz`` liveness: the process serves requests
* ``GET /readyz``  readiness: the model is loaded and the server is not shutting down
* ``GET /version`` app version and model settings

Settings come from environment variables (see ``Settings``); in Kubernetes they come
from the ``llm-app-config`` ConfigMap.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__version__ = "0.3.0"

log = logging.getLogger("llm-app")

MAX_BODY_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 4000
ROLES = ("system", "user", "assistant")


class ConfigError(ValueError):
    """A setting has an invalid value."""


@dataclass(frozen=True)
class Settings:
    """Runtime settings, read from the environment."""

    model_name: str = "echo-small"
    model_backend: str = "echo"
    model_endpoint: str = ""
    model_api_key: str = ""
    max_tokens: int = 256
    temperature: float = 0.7
    system_prompt: str = "You are a helpful assistant."
    request_timeout: float = 30.0
    log_level: str = "INFO"
    host: str = "0.0.0.0"
    port: int = 8080

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)

        def number(name: str, default, kind):
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None

        settings = cls(
            model_name=env.get("MODEL_NAME", cls.model_name),
            model_backend=env.get("MODEL_BACKEND", cls.model_backend).lower(),
            model_endpoint=env.get("MODEL_ENDPOINT", cls.model_endpoint).rstrip("/"),
            model_api_key=env.get("MODEL_API_KEY", cls.model_api_key),
            max_tokens=number("MAX_TOKENS", cls.max_tokens, int),
            temperature=number("TEMPERATURE", cls.temperature, float),
            system_prompt=env.get("SYSTEM_PROMPT", cls.system_prompt),
            request_timeout=number("REQUEST_TIMEOUT", cls.request_timeout, float),
            log_level=env.get("LOG_LEVEL", cls.log_level).upper(),
            host=env.get("HOST", cls.host),
            port=number("PORT", cls.port, int),
        )
        if settings.model_backend not in ("echo", "openai"):
            raise ConfigError(f"MODEL_BACKEND={settings.model_backend!r}: use echo or openai")
        if settings.model_backend == "openai" and not settings.model_endpoint:
            raise ConfigError("MODEL_BACKEND=openai needs MODEL_ENDPOINT")
        if settings.max_tokens < 1:
            raise ConfigError(f"MAX_TOKENS={settings.max_tokens}: must be at least 1")
        if not 0.0 <= settings.temperature <= 2.0:
            raise ConfigError(f"TEMPERATURE={settings.temperature}: must be in 0..2")
        if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL={settings.log_level!r}: use DEBUG, INFO, WARNING or ERROR")
        return settings


class ModelError(RuntimeError):
    """The model backend failed to answer."""


def count_tokens(text: str) -> int:
    """A rough token count (whitespace-separated words), good enough for usage stats."""
    return len(text.split())


class EchoModel:
    """A stand-in model: canned replies for a few prompts, an echo for the rest."""

    CANNED = {
        "hello": "Hello! I'm {model}. Ask me anything; I will answer as well as an echo can.",
        "hi": "Hi there! I'm {model}, a stand-in model running in your cluster.",
        "help": "Send a message and I will reply. Set MODEL_BACKEND=openai to talk to a real model.",
        "ping": "pong",
    }

    def __init__(self, settings: Settings):
        self.settings = settings

    def load(self) -> None:
        """Nothing to load; a real model would read weights here."""

    def complete(self, messages: list[dict]) -> str:
        prompt = messages[-1]["content"].strip()
        key = prompt.lower().strip(" !?.")
        canned = self.CANNED.get(key)
        if canned is not None:
            reply = canned.format(model=self.settings.model_name)
        else:
            turns = sum(1 for m in messages if m["role"] == "user")
            reply = f'You said: "{prompt}" ({self.settings.model_name}, turn {turns})'
        words = reply.split()
        if len(words) > self.settings.max_tokens:
            reply = " ".join(words[: self.settings.max_tokens]) + " ..."
        return reply


class OpenAIModel:
    """Any server speaking the OpenAI chat completions API."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def load(self) -> None:
        log.info("using model %s at %s", self.settings.model_name, self.settings.model_endpoint)

    def complete(self, messages: list[dict]) -> str:
        body = json.dumps(
            {
                "model": self.settings.model_name,
                "messages": messages,
                "max_tokens": self.settings.max_tokens,
                "temperature": self.settings.temperature,
            }
        ).encode()
        request = urllib.request.Request(
            f"{self.settings.model_endpoint}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if self.settings.model_api_key:
            request.add_header("Authorization", f"Bearer {self.settings.model_api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.request_timeout) as response:
                answer = json.load(response)
            return answer["choices"][0]["message"]["content"]
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise ModelError(f"model endpoint {self.settings.model_endpoint}: {err}") from err
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ModelError(f"model endpoint returned an unexpected answer: {err}") from err


def make_model(settings: Settings):
    return OpenAIModel(settings) if settings.model_backend == "openai" else EchoModel(settings)


class BadRequest(ValueError):
    """The request body is not a valid chat request."""


def parse_chat_request(payload, system_prompt: str) -> list[dict]:
    """Turns a ``/chat`` body into a message list for the model, system prompt first."""
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        raise BadRequest('"message" must be a non-empty string')
    if len(message) > MAX_MESSAGE_CHARS:
        raise BadRequest(f'"message" is longer than {MAX_MESSAGE_CHARS} characters')
    history = payload.get("history", [])
    if not isinstance(history, list):
        raise BadRequest('"history" must be a list')
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for i, turn in enumerate(history):
        if (
            not isinstance(turn, dict)
            or turn.get("role") not in ROLES
            or not isinstance(turn.get("content"), str)
        ):
            raise BadRequest(f'"history[{i}]" must be {{"role": one of {list(ROLES)}, "content": string}}')
        messages.append({"role": turn["role"], "content": turn["content"]})
    messages.append({"role": "user", "content": message})
    return messages


class ChatService:
    """The application: settings, model and readiness, independent of HTTP."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.model = make_model(settings)
        self._ready = threading.Event()

    def start(self) -> None:
        self.model.load()
        self._ready.set()

    def drain(self) -> None:
        """Stop reporting ready, so Kubernetes takes the pod out of the Service."""
        self._ready.clear()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def chat(self, payload) -> dict:
        messages = parse_chat_request(payload, self.settings.system_prompt)
        started = time.monotonic()
        reply = self.model.complete(messages)
        prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
        return {
            "reply": reply,
            "model": self.settings.model_name,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": count_tokens(reply),
                "total_tokens": prompt_tokens + count_tokens(reply),
            },
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def info(self) -> dict:
        return {
            "version": __version__,
            "model": self.settings.model_name,
            "backend": self.settings.model_backend,
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LLM chat</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; border-radius: 6px; padding: 1rem; min-height: 16rem; overflow-y: auto; }
  .user { text-align: right; color: #0b5394; }
  .assistant { color: #222; }
  .error { color: #b00; }
  form { display: flex; gap: .5rem; margin-top: 1rem; }
  input { flex: 1; padding: .5rem; }
  footer { color: #888; font-size: .8rem; margin-top: 1rem; }
</style>
</head>
<body>
<h1>LLM chat</h1>
<div id="log" aria-live="polite"></div>
<form id="form">
  <input id="message" autocomplete="off" placeholder="Say something..." required maxlength="4000">
  <button>Send</button>
</form>
<footer>model <b>__MODEL__</b> &middot; app __VERSION__</footer>
<script>
const log = document.getElementById("log");
const history = [];
function add(role, text) {
  const p = document.createElement("p");
  p.className = role;
  p.textContent = text;
  log.appendChild(p);
  log.scrollTop = log.scrollHeight;
}
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("message");
  const message = input.value;
  input.value = "";
  add("user", message);
  try {
    const response = await fetch("chat", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({message, history}),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    add("assistant", answer.reply);
    history.push({role: "user", content: message}, {role: "assistant", content: answer.reply});
  } catch (err) {
    add("error", "error: " + err.message);
  }
});
</script>
</body>
</html>
"""


def render_page(service: ChatService) -> bytes:
    from html import escape

    return (
        PAGE.replace("__MODEL__", escape(service.settings.model_name))
        .replace("__VERSION__", escape(__version__))
        .encode()
    )


class Handler(BaseHTTPRequestHandler):
    """HTTP front end of a ``ChatService`` (set as ``server.service``)."""

    server_version = f"llm-app/{__version__}"
    protocol_version = "HTTP/1.1"

    @property
    def service(self) -> ChatService:
        return self.server.service  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.send(HTTPStatus.OK, render_page(self.service), "text/html; charset=utf-8")
        elif path == "/healthz":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/readyz":
            if self.service.ready:
                self.send_json(HTTPStatus.OK, {"status": "ready"})
            else:
                self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "not ready"})
        elif path == "/version":
            self.send_json(HTTPStatus.OK, self.service.info())
        elif path == "/chat":
            self.method_not_allowed("POST")
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path != "/chat":
            if path in ("/", "/healthz", "/readyz", "/version"):
                self.method_not_allowed("GET")
            else:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})
            return
        if not self.service.ready:
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not ready"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(length)
        try:
            payload = json.loads(body or b"null")
            answer = self.service.chat(payload)
        except (ValueError, BadRequest) as err:  # json.JSONDecodeError is a ValueError
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return
        except ModelError as err:
            log.error("chat failed: %s", err)
            self.send_json(HTTPStatus.BAD_GATEWAY, {"error": "the model is unavailable"})
            return
        log.info(
            "chat model=%s prompt_tokens=%d completion_tokens=%d latency_ms=%s",
            answer["model"],
            answer["usage"]["prompt_tokens"],
            answer["usage"]["completion_tokens"],
            answer["latency_ms"],
        )
        self.send_json(HTTPStatus.OK, answer)

    def method_not_allowed(self, allowed: str) -> None:
        self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use {allowed}"}, {"Allow": allowed})

    def send_json(self, status: HTTPStatus, body: dict, headers: dict | None = None) -> None:
        self.send(status, json.dumps(body).encode() + b"\n", "application/json", headers)

    def send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base class signature)
        # Probes every few seconds would drown the log: they go to DEBUG.
        probe = self.path in ("/healthz", "/readyz")
        log.log(logging.DEBUG if probe else logging.INFO, "%s %s", self.address_string(), format % args)


def make_server(service: ChatService, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.service = service  # type: ignore[attr-defined]
    return server


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        print(f"llm-app: configuration error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    service = ChatService(settings)
    server = make_server(service, settings.host, settings.port)
    service.start()

    def stop(signum, _frame):
        # Fail readiness first, then stop; the pod's preStop sleep gives the endpoints
        # controller time to take it out of the Service before this signal arrives.
        log.info("received %s, shutting down", signal.Signals(signum).name)
        service.drain()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info(
        "llm-app %s serving on http://%s:%d (model %s, backend %s)",
        __version__,
        host,
        port,
        settings.model_name,
        settings.model_backend,
    )
    server.serve_forever()
    server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

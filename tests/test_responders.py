"""Responders against real local servers: llama.cpp itself and a small server that fails on purpose."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pmlm_lib.prompts import coarse_prompt, raw_prompt
from pmlm_lib.responders import AnswerCache, Decoding, RawDataRefused, contains_raw_values
from pmlm_lib.responders.llamacpp import LlamaCppResponder
from pmlm_lib.responders.openai_compat import EndpointError, OpenAICompatibleResponder

SHORT = Decoding(max_tokens=12)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    responder = LlamaCppResponder(n_parallel=2, ctx_per_slot=1024, cache=AnswerCache(tmp_path_factory.mktemp("c") / "a.sqlite"))
    yield responder
    responder.close()


def test_llamacpp_answers_in_order_and_from_cache(llama):
    prompts = ["Name a fruit.", "Name a colour.", "Name a fruit."]
    first = llama.answer(prompts, SHORT)
    assert len(first) == 3 and all(a.strip() for a in first) and first[0] == first[2]
    assert llama.stats["answered"] == 2  # the repeated prompt was generated once
    again = llama.answer(prompts, SHORT)
    assert again == first and llama.stats["from_cache"] == 3


def test_greedy_decoding_is_deterministic(llama):
    fresh = LlamaCppResponder(n_parallel=1, ctx_per_slot=1024, use_cache=False)
    a = fresh.answer(["Give one tip for a healthy pregnancy."], SHORT)
    b = fresh.answer(["Give one tip for a healthy pregnancy."], SHORT)
    assert a == b


def test_openai_backend_against_a_real_llamacpp_server(llama, tmp_path, monkeypatch):
    secret = "sk-test-7f3a9c1e5b"
    monkeypatch.setenv("PMLM_TEST_KEY", secret)
    cache = AnswerCache(tmp_path / "answers.sqlite")
    remote = OpenAICompatibleResponder(base_url=llama.base_url, model="smollm2", api_key_env="PMLM_TEST_KEY", cache=cache)
    answers = remote.answer(["Name a vegetable.", "Name an animal."], SHORT)
    assert all(len(a.split()) >= 1 for a in answers) and remote.requests_sent == 2
    # the key never lands in the cache, the identity or the representation
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes()
    assert secret not in json.dumps(remote.identity) and secret not in repr(remote)


class _Script:
    """What the fake endpoint answers, request by request."""

    def __init__(self, statuses=(), fail_prompt=None):
        self.statuses = list(statuses)
        self.fail_prompt = fail_prompt
        self.requests = []


@pytest.fixture
def fake_endpoint():
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][0]["content"]
            script.requests.append(prompt)
            status = script.statuses.pop(0) if script.statuses else 200
            if script.fail_prompt and prompt == script.fail_prompt:
                status = 400
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            payload = {"choices": [{"message": {"content": f"answer to {prompt}"}}]} if status == 200 else {"error": "no"}
            self.wfile.write(json.dumps(payload).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()


def test_retries_with_backoff_on_503_and_429(fake_endpoint):
    url, script = fake_endpoint
    script.statuses = [503, 429]
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, use_cache=False)
    assert r.answer(["hello"]) == ["answer to hello"]
    assert len(script.requests) == 3


def test_refusal_is_one_clear_error_without_retries(fake_endpoint):
    url, script = fake_endpoint
    script.statuses = [401]
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, use_cache=False)
    with pytest.raises(EndpointError, match="HTTP 401"):
        r.answer(["hello"])
    assert len(script.requests) == 1


def test_unreachable_endpoint_says_so():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = OpenAICompatibleResponder(f"http://127.0.0.1:{port}", "m", api_key_env=None, max_retries=1, backoff=0.01, use_cache=False)
    with pytest.raises(EndpointError, match="did not answer after 2 attempts"):
        r.answer(["hello"])


def test_an_interrupted_batch_keeps_its_finished_answers(fake_endpoint, tmp_path):
    url, script = fake_endpoint
    script.fail_prompt = "p3"
    cache = AnswerCache(tmp_path / "a.sqlite")
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, cache=cache, concurrency=1)
    with pytest.raises(EndpointError):
        r.answer(["p1", "p2", "p3", "p4"])
    assert len(cache) == 3
    script.fail_prompt, script.requests = None, []
    resumed = OpenAICompatibleResponder(url, "m", api_key_env=None, cache=AnswerCache(tmp_path / "a.sqlite"))
    assert resumed.answer(["p1", "p2", "p3", "p4"]) == [f"answer to p{i}" for i in range(1, 5)]
    assert script.requests == ["p3"]


def test_raw_values_do_not_leave_the_machine_without_opt_in(fake_endpoint):
    url, script = fake_endpoint
    raw = raw_prompt("HGB = hemoglobin (g/L)", "2022-05-03: HGB 112, PLT 158")
    coarse = coarse_prompt("normal", [("normal", 0.91)])
    assert contains_raw_values(raw) and not contains_raw_values(coarse)
    remote = OpenAICompatibleResponder(url, "m", api_key_env=None, use_cache=False, local=False)
    with pytest.raises(RawDataRefused, match="allow_raw_data"):
        remote.answer([coarse, raw])
    assert script.requests == []  # refused before anything was sent
    assert remote.answer([coarse]) == [f"answer to {coarse}"]
    opted_in = OpenAICompatibleResponder(url, "m", api_key_env=None, use_cache=False, local=False, allow_raw_data=True)
    assert opted_in.answer([raw]) == [f"answer to {raw}"]


@pytest.mark.slow
def test_transformers_backend_on_the_converted_model(tmp_path):
    from pmlm_lib.responders.local import TransformersResponder

    r = TransformersResponder(batch_size=2, cache=AnswerCache(tmp_path / "a.sqlite"))
    answers = r.answer(["Name a fruit.", "Name a colour.", "Name a month."], SHORT)
    assert len(answers) == 3 and all(a.strip() for a in answers)

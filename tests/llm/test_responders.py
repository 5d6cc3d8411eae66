"""Responders against real local servers: llama.cpp itself and a small server that fails on purpose."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from pmlm_lib.data.prompts import coarse_prompt, raw_prompt
from pmlm_lib.llm.responders import (
    AnswerCache,
    Decoding,
    RawDataRefused,
    RawValueGuard,
    contains_raw_values,
    is_local_url,
)
from pmlm_lib.llm.responders.base import CacheWarning
from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder
from pmlm_lib.llm.responders.openai_compat import EndpointError, OpenAICompatibleResponder

SHORT = Decoding(max_tokens=12)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    responder = LlamaCppResponder(
        n_parallel=2, ctx_per_slot=1024, cache=AnswerCache(tmp_path_factory.mktemp("c") / "a.sqlite")
    )
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
    remote = OpenAICompatibleResponder(
        base_url=llama.base_url, model="smollm2", api_key_env="PMLM_TEST_KEY", cache=cache
    )
    answers = remote.answer(["Name a vegetable.", "Name an animal."], SHORT)
    assert all(len(a.split()) >= 1 for a in answers) and remote.requests_sent == 2
    # the key never lands in the cache, the identity or the representation
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes()
    assert secret not in json.dumps(remote.identity) and secret not in repr(remote)


class _Script:
    """What the fake endpoint answers, request by request: a list of actions, then 200 with an answer.
    An action is a status code, or one of "echo401", "echo500", "html", "malformed", "no_choices",
    "error_object", "null", "empty", "drip", or ("retry_after", seconds)."""

    def __init__(self, statuses=(), fail_prompt=None):
        self.statuses = list(statuses)
        self.fail_prompt = fail_prompt
        self.requests = []
        self.bodies = []


@pytest.fixture
def fake_endpoint():
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status, body: bytes, content_type="application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            script.bodies.append(raw.decode())
            prompt = json.loads(raw)["messages"][0]["content"]
            script.requests.append(prompt)
            action = script.statuses.pop(0) if script.statuses else 200
            if script.fail_prompt and prompt == script.fail_prompt:
                action = 400
            auth = self.headers.get("Authorization", "")
            if action == "echo401":
                return self.send(
                    401, json.dumps({"error": f"invalid credentials: got header Authorization: {auth}"}).encode()
                )
            if action == "echo500":
                return self.send(500, f"upstream failed for request with {auth}".encode(), "text/plain")
            if action == "html":
                return self.send(200, b"<!DOCTYPE html><html><body>Gateway login</body></html>", "text/html")
            if action == "malformed":
                return self.send(200, b'{"choices": [{"message": ')
            if action == "no_choices":
                return self.send(200, b'{"choices": []}')
            if action == "error_object":
                return self.send(200, b'{"error": {"message": "model overloaded"}}')
            if action in ("null", "empty"):
                content = None if action == "null" else ""
                return self.send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())
            if action == "drip":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                for _ in range(40):  # one byte every 0.25 s: each read is quick, the whole answer never comes
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.25)
                return
            if isinstance(action, tuple) and action[0] == "retry_after":
                return self.send(429, b'{"error": "slow down"}', headers=[("Retry-After", str(action[1]))])
            if action != 200:
                return self.send(action, json.dumps({"error": "no"}).encode())
            self.send(200, json.dumps({"choices": [{"message": {"content": f"answer to {prompt}"}}]}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
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
    r = OpenAICompatibleResponder(
        f"http://127.0.0.1:{port}", "m", api_key_env=None, max_retries=1, backoff=0.01, use_cache=False
    )
    with pytest.raises(EndpointError, match="no usable answer after 2 attempt"):
        r.answer(["hello"])


def test_an_interrupted_batch_keeps_its_finished_answers(fake_endpoint, tmp_path):
    url, script = fake_endpoint
    script.fail_prompt = "p3"
    cache = AnswerCache(tmp_path / "a.sqlite")
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, cache=cache, concurrency=1)
    with pytest.raises(EndpointError):
        r.answer(["p1", "p2", "p3", "p4"])
    assert len(cache) == 2  # p1 and p2 kept; after the failure of p3 nothing new was asked
    script.fail_prompt, script.requests = None, []
    resumed = OpenAICompatibleResponder(url, "m", api_key_env=None, cache=AnswerCache(tmp_path / "a.sqlite"))
    assert resumed.answer(["p1", "p2", "p3", "p4"]) == [f"answer to p{i}" for i in range(1, 5)]
    assert sorted(script.requests) == ["p3", "p4"]


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
    from pmlm_lib.llm.responders.local import TransformersResponder

    r = TransformersResponder(batch_size=2, device="cpu", cache=AnswerCache(tmp_path / "a.sqlite"))
    answers = r.answer(["Name a fruit.", "Name a colour.", "Name a month."], SHORT)
    assert len(answers) == 3 and all(a.strip() for a in answers)


# ---- privacy: the guard and the key ------------------------------------------------------------------
def test_local_or_remote_is_decided_by_the_parsed_host():
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434", "http://[::1]:8000/v1", "http://127.3.4.5"):
        assert is_local_url(url), url
    for url in (
        "http://127.0.0.1.nip.io/v1",
        "https://localhost.attacker.example/v1",
        "https://x.example/?u=http://127.0.0.1",
        "https://api.openai.com/v1",
        "http://10.0.0.5:8000",
        "not a url",
        "http://user@127.0.0.1.evil.example",
    ):
        assert not is_local_url(url), url
    tricky = OpenAICompatibleResponder("http://127.0.0.1.nip.io/v1", "m", api_key_env=None, use_cache=False)
    assert tricky.remote


def test_raw_values_are_seen_in_a_hospitals_own_names_and_times(small_cohort):
    from pmlm_lib.data.prompts import coarse_prompts
    from pmlm_lib.data.serialize import serialize_history

    guard = RawValueGuard().extend(["ferritin_ng", "d-dimer"])
    assert guard("My ferritin ng 12.5 worries me") and guard("D-dimer: 0.8") and guard("ferritin_ng=40")
    assert guard("2022-05-03 08:30: HGB 112, PLT 158") and guard("2022-05-03: something 5")
    assert guard("hemoglobin 98 g/L last week") and guard("Hemoglobin: 98") and guard("NEUT% 81.2")
    history = serialize_history(small_cohort.history(small_cohort.patient_ids[0]), small_cohort.indicators)
    assert guard(history)
    # the PMLM prompts pass: a label, peers' diagnoses and similarities are no examination values
    peers = pd.DataFrame(
        [
            {"patient_id": p, "rank": r, "peer_label": "gestational diabetes", "similarity": 0.9 - r / 100}
            for p in small_cohort.patient_ids[:20]
            for r in range(1, 11)
        ]
    )
    prompts = coarse_prompts(small_cohort.patients.set_index("patient_id")["label"].head(20), peers, 10)["prompt"]
    assert not any(guard(p) for p in prompts) and not any(contains_raw_values(p) for p in prompts)


def test_the_guard_uses_the_cohorts_names_before_sending(fake_endpoint):
    url, script = fake_endpoint
    from pmlm_lib.llm.responders import make_responder

    remote = make_responder(
        {"backend": "openai", "base_url": url, "model": "m", "api_key_env": None, "use_cache": False, "local": False},
        raw_names=["ferritin_ng"],
    )
    with pytest.raises(RawDataRefused):
        remote.answer(["My results: ferritin ng 12.5, please advise."])
    assert script.requests == []


def test_an_echoed_key_never_reaches_a_message(fake_endpoint, monkeypatch):
    url, script = fake_endpoint
    secret = "sk-live-9d8c7b6a5f4e"
    monkeypatch.setenv("PMLM_TEST_KEY", secret)
    r = OpenAICompatibleResponder(url, "m", api_key_env="PMLM_TEST_KEY", backoff=0.01, max_retries=1, use_cache=False)
    script.statuses = ["echo401"]
    with pytest.raises(EndpointError) as info:
        r.answer(["hello"])
    assert "HTTP 401" in str(info.value) and secret not in str(info.value) and "[redacted]" in str(info.value)
    script.statuses = ["echo500", "echo500"]
    with pytest.raises(EndpointError) as info:
        r.answer(["again"])
    assert secret not in str(info.value) and "Bearer" not in str(info.value).replace("Bearer [redacted]", "")


# ---- endpoint faults -------------------------------------------------------------------------------------
def test_a_dripping_server_meets_one_deadline_per_request(fake_endpoint):
    url, script = fake_endpoint
    script.statuses = ["drip", "drip", "drip"]
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, timeout=1.0, backoff=0.01, max_retries=3, use_cache=False)
    start = time.perf_counter()
    with pytest.raises(EndpointError, match="deadline"):
        r.answer(["hello"])
    assert (
        time.perf_counter() - start < 4.0 and len(script.requests) == 2
    )  # a server that hangs twice is not asked again


def test_retry_after_is_honoured_and_bounded(fake_endpoint):
    url, script = fake_endpoint
    script.statuses = [("retry_after", 1)]
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, use_cache=False)
    start = time.perf_counter()
    assert r.answer(["hello"]) == ["answer to hello"] and time.perf_counter() - start >= 1.0
    script.statuses = [("retry_after", 3600)]
    bounded = OpenAICompatibleResponder(url, "m", api_key_env=None, max_retry_after=0.2, use_cache=False)
    start = time.perf_counter()
    assert bounded.answer(["again"]) == ["answer to again"] and time.perf_counter() - start < 2.0


@pytest.mark.parametrize("fault", ["html", "malformed", "no_choices", "error_object", "null"])
def test_answers_that_are_not_chat_completions_are_retried_then_reported(fake_endpoint, fault):
    url, script = fake_endpoint
    script.statuses = [fault]
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, max_retries=2, use_cache=False)
    assert r.answer(["hello"]) == ["answer to hello"] and len(script.requests) == 2
    script.statuses = [fault] * 3
    with pytest.raises(EndpointError) as info:
        r.answer(["again"])
    assert url in str(info.value) and "after 3 attempt" in str(info.value)


def test_empty_answers_are_never_cached(fake_endpoint, tmp_path):
    url, script = fake_endpoint
    script.statuses = ["empty"]
    cache = AnswerCache(tmp_path / "a.sqlite")
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, cache=cache)
    assert r.answer(["hello"]) == [""] and len(cache) == 0 and r.stats["empty_not_cached"] == 1
    assert r.answer(["hello"]) == ["answer to hello"] and len(cache) == 1  # asked again, then kept


def test_a_failing_prompt_ends_the_batch_early_with_the_finished_answers_saved(fake_endpoint, tmp_path):
    url, script = fake_endpoint
    script.fail_prompt = "p2"
    cache = AnswerCache(tmp_path / "a.sqlite")
    r = OpenAICompatibleResponder(url, "m", api_key_env=None, backoff=0.01, cache=cache, concurrency=2)
    with pytest.raises(EndpointError):
        r.answer([f"p{i}" for i in range(40)])
    assert len(script.requests) < 10 and len(cache) == len(script.requests) - 1  # every answer received is kept


# ---- the answer cache ------------------------------------------------------------------------------------
def test_a_damaged_cache_is_moved_aside_and_a_fresh_one_starts(tmp_path):
    path = tmp_path / "answers.sqlite"
    cache = AnswerCache(path)
    cache.put("k", {"backend": "x"}, "p", Decoding(), "a", 0.1)
    cache._db.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00garbage" * 50)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"answers.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.warns(CacheWarning, match="damaged.*moved to.*generated again"):
        fresh = AnswerCache(path)
    assert len(fresh) == 0 and list(tmp_path.glob("answers.sqlite.damaged-*"))
    fresh.put("k", {"backend": "x"}, "p", Decoding(), "a", 0.1)
    assert fresh.get_many(["k"]) == {"k": "a"}


def test_an_unwritable_cache_keeps_answers_in_memory_with_a_warning(tmp_path):
    import os

    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): a read-only folder cannot be simulated")
        with pytest.warns(CacheWarning, match="kept in memory"):
            cache = AnswerCache(folder / "answers.sqlite")
        cache.put("k", {"backend": "x"}, "p", Decoding(), "a", 0.1)
        assert cache.in_memory and cache.get_many(["k"]) == {"k": "a"}
    finally:
        os.chmod(folder, 0o700)


def test_a_cache_file_that_cannot_be_opened_as_a_database_keeps_answers_in_memory(tmp_path):
    path = tmp_path / "answers.sqlite"
    path.mkdir()  # a folder where the file should be: sqlite cannot open it
    with pytest.warns(CacheWarning, match="kept in memory"):
        cache = AnswerCache(path)
    cache.put("k", {"backend": "x"}, "p", Decoding(), "a", 0.1)
    assert cache.get_many(["k"]) == {"k": "a"}


def test_llama_cpp_server_settings_pass_through_by_name():
    """A user with other hardware sets any llama.cpp server setting (n_gpu_layers, n_ubatch ...) by its
    name; a misspelt one is refused before a server starts, with the names it could have been."""
    with pytest.raises(ValueError, match="n_ubach.*n_gpu_layers"):
        LlamaCppResponder(server_options={"n_ubach": 256})
    small = LlamaCppResponder(n_parallel=1, ctx_per_slot=1024, use_cache=False, server_options={"n_ubatch": 64})
    try:
        assert small.answer(["Name a fruit."], SHORT)[0].strip()
    finally:
        small.close()

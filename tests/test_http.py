"""The HTTP service through FastAPI's test client, plus one real uvicorn start on a free port."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from fastapi.testclient import TestClient

from qingfin.serve.http import ServeSettings, create_app, hash_api_key, read_api_key_hashes


@pytest.fixture(scope="module")
def client(tiny_bundle):
    with TestClient(create_app(tiny_bundle, ServeSettings(max_texts=4, max_chars_per_text=50, max_chars_per_request=120))) as c:
        yield c


def test_moderate_texts_and_single_text(client):
    response = client.post("/v1/moderate", json={"texts": ["加薇信领额度", "今天天气真好"]})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 2 and body["model_version"] == "0.0.1" and len(body["model_digest"]) == 64
    first = body["results"][0]
    assert set(first) == {"labels", "scores", "decisions", "decision", "evidence", "model_version"}
    single = client.post("/v1/moderate", json={"text": "加薇信领额度"}).json()
    # Static int8: the same text scores the same alone or with batch-mates.
    assert single["results"][0]["scores"] == pytest.approx(first["scores"], abs=1e-5)


def test_threshold_overrides_are_validated(client):
    ok = client.post("/v1/moderate", json={"text": "x", "thresholds": {"defamation": {"review": 0.0}}}).json()
    assert "defamation" in ok["results"][0]["labels"]
    for thresholds, fragment in (({"fraud": {"review": 0.1}}, "unknown label"), ({"defamation": {"review": 2}}, "[0, 1]")):
        response = client.post("/v1/moderate", json={"text": "x", "thresholds": thresholds})
        assert response.status_code == 422 and fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"texts": ["a"] * 5}, 413, "too_many_texts"),
        ({"texts": ["长" * 51]}, 413, "text_too_long"),
        ({"texts": ["长" * 50, "长" * 50, "长" * 50]}, 413, "request_too_large"),
        ({"texts": [1, 2]}, 422, "invalid_request"),
        ({"texts": ["a"], "extra": 1}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"texts": []}, 422, "invalid_request"),
    ],
)
def test_limits_and_bad_input(client, payload, status, code):
    response = client.post("/v1/moderate", json=payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text


def test_malformed_json(client):
    response = client.post("/v1/moderate", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_health_model_metrics_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    info = client.get("/v1/model").json()
    assert info["labels"][0] == {"id": "impersonation", "zh": "冒充专业身份误导公众"} and info["normalizer"]["name"]
    metrics = client.get("/metrics").text
    assert "qingfin_requests_total" in metrics and "qingfin_texts_scored_total" in metrics
    assert "/v1/moderate" in client.get("/openapi.json").json()["paths"]


def test_api_keys(tiny_bundle, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# service A\nsvc-a:{hash_api_key('s3cret')}\n")
    settings = ServeSettings(api_key_hashes=read_api_key_hashes(keys))
    with TestClient(create_app(tiny_bundle, settings)) as c:
        assert c.post("/v1/moderate", json={"text": "x"}).status_code == 401
        assert c.post("/v1/moderate", json={"text": "x"}, headers={"x-api-key": "wrong"}).status_code == 401
        assert c.post("/v1/moderate", json={"text": "x"}, headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open
    keys.write_text("not-a-hash\n")
    with pytest.raises(ValueError, match="keys.txt:1"):
        read_api_key_hashes(keys)


def test_micro_batcher_shares_model_calls_and_keeps_rows_apart():
    import asyncio

    import numpy as np

    from qingfin.serve.microbatch import MicroBatcher

    calls = []

    def score(texts):
        calls.append(len(texts))
        return np.array([[float(t)] for t in texts])

    async def run():
        batcher = MicroBatcher(score, max_batch=16, max_wait_ms=20)
        batcher.start()
        results = await asyncio.gather(*[batcher.submit([str(i), str(i + 100)]) for i in range(12)])
        await batcher.stop()
        return results

    results = asyncio.run(run())
    assert [r[:, 0].tolist() for r in results] == [[i, i + 100] for i in range(12)]
    assert sum(calls) == 24 and len(calls) < 12  # requests shared model calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_uvicorn_start(tiny_bundle):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "qingfin.training.cli", "serve", "--model", str(tiny_bundle), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/moderate", data=json.dumps({"text": "加微信"}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["results"][0]["decision"] in {"pass", "review", "block"}
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert "加微信" not in output  # request texts are never logged

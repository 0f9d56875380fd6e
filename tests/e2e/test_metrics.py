"""``GET /metrics`` scraped from a real server after an upload, a download, a download whose
data vanished from the store, and an upload that fails on a full disk (RLIMIT_FSIZE: the
store's writes fail with EFBIG, as on ENOSPC); and ``metrics_bind`` (off, or a listener of
its own)."""

from __future__ import annotations

import resource

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import ADMIN_HEADERS, free_port

MiB = 1024 * 1024
FSIZE_LIMIT = 4 * MiB  # the largest file the server process may write


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, frozenset(labels.items())), 0.0)


def _create(client: httpx.Client) -> str:
    r = client.post("/v2/images", json={"name": "m", "disk_format": "raw",
                                        "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_metrics_show_an_upload_a_download_and_a_failed_upload(make_server) -> None:  # noqa: ANN001
    # downloads streamed (not sendfile) so that they read through the store
    srv = make_server(preexec=_limit_file_size, env={"STREAMD_ZERO_COPY": "false"})
    data = bytes(range(256)) * 4096  # 1 MiB
    file = "/v2/images/{image_id}/file"
    with httpx.Client(base_url=srv.url, headers=ADMIN_HEADERS, timeout=30) as client:
        image = _create(client)
        put = client.put(f"/v2/images/{image}/file", content=data,
                         headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 204, put.text
        get = client.get(f"/v2/images/{image}/file")
        assert get.content == data
        (stored,) = srv.data_dir.glob(f"images/*{image}*")
        stored.unlink()  # the data gone behind the server's back: the next read fails
        # 204, as Glance answers an active image whose data is missing
        assert client.get(f"/v2/images/{image}/file").status_code == 204
        full = _create(client)
        failed = client.put(f"/v2/images/{full}/file", content=bytes(2 * FSIZE_LIMIT),
                            headers={"Content-Type": "application/octet-stream"})
        assert failed.status_code in (413, 507), failed.text
        text = client.get("/metrics").text
    samples = _samples(text)
    assert _value(samples, "streamd_http_requests_total", method="PUT", route=file,
                  status="204") == 1
    assert _value(samples, "streamd_http_requests_total", method="GET", route=file,
                  status="200") == 1
    assert _value(samples, "streamd_http_requests_total", method="GET", route=file,
                  status="204") == 1  # the read that failed
    assert _value(samples, "streamd_http_requests_total", method="PUT", route=file,
                  status=str(failed.status_code)) == 1
    assert _value(samples, "streamd_http_requests_total", method="POST", route="/v2/images",
                  status="201") == 2
    assert _value(samples, "streamd_http_request_seconds_count", method="PUT", route=file) == 2
    assert _value(samples, "streamd_http_received_bytes_total", route=file) >= len(data)
    # the download, and the failed requests' JSON errors
    sent = _value(samples, "streamd_http_sent_bytes_total", route=file)
    assert len(data) < sent < len(data) + 2048
    assert _value(samples, "streamd_store_bytes_total", store="file", op="write") == len(data)
    assert _value(samples, "streamd_store_bytes_total", store="file", op="read") == len(data)
    assert _value(samples, "streamd_store_errors_total", store="file", op="read",
                  cause="data missing from the store") == 1
    assert _value(samples, "streamd_store_errors_total", store="file", op="upload",
                  cause="disk full") == 1
    assert _value(samples, "streamd_transfers_in_flight") == 0
    assert ("streamd_db_threads_busy", frozenset()) in samples
    assert _value(samples, "streamd_db_pool_connections", state="idle") >= 1
    assert ("streamd_cache_hits_total", frozenset()) in samples
    # the cause in words, with the image and the store
    assert f"UPLOAD FAILED image={full} store=file cause=disk full" in srv.log()
    assert f"READ FAILED image={image} store=file cause=data missing from the store" in srv.log()


def test_metrics_off_or_on_an_address_of_their_own(make_server) -> None:  # noqa: ANN001
    off = make_server(env={"STREAMD_METRICS_BIND": "off"})
    assert httpx.get(off.url + "/metrics").status_code == 404
    port = free_port()
    apart = make_server(env={"STREAMD_METRICS_BIND": f"127.0.0.1:{port}"})
    assert httpx.get(apart.url + "/metrics").status_code == 404
    httpx.get(apart.url + "/v2/images", headers=ADMIN_HEADERS)
    r = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200
    assert _value(_samples(r.text), "streamd_http_requests_total", method="GET",
                  route="/v2/images", status="200") == 1
    other = httpx.get(f"http://127.0.0.1:{port}/v2/images")
    assert other.status_code == 404 and "metrics" in other.json()["error"]["message"]

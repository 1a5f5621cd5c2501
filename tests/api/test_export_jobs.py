"""Exports run as tasks: 202 and a job, its progress, its file, and a file that
never outlives a forget, an erasure or its time. Without a broker the task
runs in the request (the real-worker test is in tests/test_worker.py)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from memories.models import ExportJob, ExportPart, Memory
from memories.user_data import exports
from tests.helpers import database_rows_containing, post_forget, post_message

pytestmark = pytest.mark.django_db(transaction=True)


def _start(client, user_id="u1"):
    response = client.get(
        f"/api/v1/users/{user_id}/export", HTTP_PREFER="respond-async"
    )
    assert response.status_code == 202, response.content
    assert response["Location"] == f"/api/v1/exports/{response.json()['jobId']}"
    return response


def _download(client, job_id):
    return client.get(f"/api/v1/exports/{job_id}/download")


def _file(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return json.loads(b"".join(response.streaming_content))


def test_an_async_export_gives_the_same_file_as_the_streamed_one(client_a):
    for text in ("I live in Lisbon.", "I am allergic to peanuts."):
        post_message(client_a, "u1", text)

    started = _start(client_a)

    job = started.json()
    assert (job["userId"], job["recordsTotal"]) == ("u1", 6)  # 4 memories, 2 messages
    followed = client_a.get(started["Location"]).json()
    assert followed["state"] == "done"
    assert followed["recordsDone"] == 6
    assert followed["sizeBytes"] > 0
    assert followed["download"] == f"/api/v1/exports/{job['jobId']}/download"
    assert followed["expiresAt"] > followed["finishedAt"]
    exported = _file(_download(client_a, job["jobId"]))
    streamed = _file(client_a.get("/api/v1/users/u1/export"))
    for export in (exported, streamed):
        del export["exportedAt"]
    assert exported == streamed


def test_a_large_export_is_stored_in_parts_and_joined_in_order(client_a, monkeypatch):
    monkeypatch.setattr(exports, "PART_CHARS", 200)
    texts = [f"I visited museum number {index} in Lisbon." for index in range(12)]
    for text in texts:
        post_message(client_a, "u1", text)

    job_id = _start(client_a).json()["jobId"]

    assert ExportPart.objects.filter(job_id=job_id).count() > 3
    exported = _file(_download(client_a, job_id))
    assert [message["text"] for message in exported["messages"]] == texts


def test_forgetting_discards_the_users_stored_exports(client_a):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    post_message(client_a, "u2", "I am allergic to peanuts.")
    job_id = _start(client_a).json()["jobId"]
    other = _start(client_a, "u2").json()["jobId"]
    assert ExportPart.objects.filter(job_id=job_id).exists()

    forgotten = post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")

    assert forgotten.status_code == 200, forgotten.content
    status = client_a.get(f"/api/v1/exports/{job_id}").json()
    assert (status["state"], status["download"]) == ("discarded", None)
    gone = _download(client_a, job_id)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "export_gone"
    assert not ExportPart.objects.filter(job_id=job_id).exists()
    # Another user's export keeps its file.
    assert _download(client_a, other).status_code == 200


def test_deleting_one_memory_or_erasing_the_user_discards_them_too(client_a):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    job_id = _start(client_a).json()["jobId"]
    memory = Memory.objects.filter(user_id="u1", kind="fact").get()

    assert client_a.delete(f"/api/v1/memories/{memory.vector_key}").status_code == 204

    assert ExportJob.objects.get(pk=job_id).state == "discarded"
    post_message(client_a, "u1", "I live in Porto.")
    second = _start(client_a).json()["jobId"]

    erased = client_a.delete("/api/v1/users/u1")

    assert erased.status_code == 200, erased.content
    assert erased.json()["remaining"]["exportFiles"] == 0
    assert ExportJob.objects.get(pk=second).state == "discarded"
    assert database_rows_containing("Porto") == []


def test_an_export_written_while_the_user_is_forgotten_throws_its_file_away(
    client_a, monkeypatch
):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    real_store = exports._store_part

    def forget_meanwhile(job, number, pieces, done):
        stored = real_store(job, number, pieces, done)
        # A forget commits between two parts of the export.
        post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
        return stored

    monkeypatch.setattr(exports, "_store_part", forget_meanwhile)
    job_id = _start(client_a).json()["jobId"]

    assert ExportJob.objects.get(pk=job_id).state == "discarded"
    assert not ExportPart.objects.filter(job_id=job_id).exists()
    assert database_rows_containing("peanuts") == []


def test_an_export_expires_and_can_be_deleted(client_a):
    post_message(client_a, "u1", "I live in Lisbon.")
    first = _start(client_a).json()["jobId"]
    second = _start(client_a).json()["jobId"]
    ExportJob.objects.filter(pk=first).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    # Past its time it is gone at once, and the sweep deletes its file.
    assert _download(client_a, first).status_code == 410
    assert exports.exports_expire() == 1
    assert client_a.get(f"/api/v1/exports/{first}").json()["state"] == "expired"
    assert not ExportPart.objects.filter(job_id=first).exists()

    deleted = client_a.delete(f"/api/v1/exports/{second}")

    assert deleted.status_code == 200
    assert deleted.json()["state"] == "expired"
    assert _download(client_a, second).status_code == 410
    assert not ExportPart.objects.filter(job_id=second).exists()


def test_a_file_being_written_is_not_ready(client_a):
    post_message(client_a, "u1", "I live in Lisbon.")
    job_id = _start(client_a).json()["jobId"]
    ExportJob.objects.filter(pk=job_id).update(state="running")

    response = _download(client_a, job_id)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "export_not_ready"


def test_another_tenants_export_jobs_are_not_found(client_a, client_b):
    post_message(client_a, "u1", "I live in Lisbon.")
    job_id = _start(client_a).json()["jobId"]
    for response in (
        client_b.get(f"/api/v1/exports/{job_id}"),
        _download(client_b, job_id),
        client_b.delete(f"/api/v1/exports/{job_id}"),
        client_a.get("/api/v1/exports/not-a-job"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert _download(client_a, job_id).status_code == 200


def test_an_async_export_of_an_unknown_user_is_not_found(client_a):
    response = client_a.get("/api/v1/users/nobody/export", HTTP_PREFER="respond-async")
    assert response.status_code == 404
    assert not ExportJob.objects.exists()


def test_an_export_run_again_after_a_failure_starts_over(client_a):
    post_message(client_a, "u1", "I live in Lisbon.")
    job_id = _start(client_a).json()["jobId"]
    # As a worker that died after a part: running, a stale part and size.
    ExportJob.objects.filter(pk=job_id).update(state="running", size_bytes=999_999)
    ExportPart.objects.filter(job_id=job_id).update(text='{"stale": true}')

    job = exports.export_job_run(job_id)

    assert job.state == "done"
    texts = list(
        ExportPart.objects.filter(job_id=job_id).values_list("text", flat=True)
    )
    assert job.size_bytes == sum(len(text.encode()) for text in texts)
    assert _file(_download(client_a, job_id))["userId"] == "u1"

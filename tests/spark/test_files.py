"""ai_query's ``files =>``: images read with Spark's binaryFile source, sent with the prompt in each API's own form
(the emulator decodes each image and checks its bytes against the declared type), with clear errors for what
cannot be sent."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

import aiquery
from aiquery.config import UsageSettings, load_settings

pytestmark = pytest.mark.spark

APIS = {"i-chat": "chat", "i-responses": "responses", "i-openai": "openai-responses", "i-claude": "anthropic"}
APIS["i-gemini"] = "gemini"
IMAGES = {
    "a.png": b"\x89PNG\r\n\x1a\n",
    "b.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF",
    "c.gif": b"GIF89a",
    "d.webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
}


@pytest.fixture
def images(spark: Any, gateway: Any, tmp_path: Path) -> Path:
    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token})
    for name, api in APIS.items():
        settings = settings.with_endpoint(name, api=api)
    aiquery.register(spark, settings=dataclasses.replace(settings, usage=UsageSettings(enabled=False)))
    folder = tmp_path / "images"
    folder.mkdir()
    for name, head in IMAGES.items():
        (folder / name).write_bytes(head + os.urandom(4_000))
    return folder


@pytest.mark.compat
def test_images_reach_each_api_in_its_own_form(spark: Any, gateway: Any, images: Path) -> None:
    spark.read.format("binaryFile").load(str(images)).createOrReplaceTempView("pictures")
    for endpoint in APIS:
        rows = spark.sql(
            f"""SELECT path, ai_query('{endpoint}', 'Describe the picture.', files => content) AS answer
                FROM pictures"""
        ).collect()
        answers = {Path(row.path).name: row.answer for row in rows}
        assert set(answers) == set(IMAGES) and all(answers.values())
        # One prompt, four images: four requests, four different answers (the emulator's depends on the image).
        assert len(set(answers.values())) == len(IMAGES), endpoint
    stats = gateway.stats()
    assert stats["requests"] == len(APIS) * len(IMAGES) and stats["by_status"] == {"200": stats["requests"]}
    assert len(stats["by_route"]) == len(APIS)


def test_the_image_is_part_of_the_requests_key(spark: Any, gateway: Any, images: Path, tmp_path: Path) -> None:
    from ledgers import own_ledger_settings

    settings = own_ledger_settings(gateway, tmp_path, "files").with_endpoint("i-chat", api="chat")
    aiquery.register(spark, settings=settings)
    spark.conf.set("aiquery.cache.enabled", "true")  # an answer store of this test's own
    png, jpeg = (images / "a.png").read_bytes(), (images / "b.jpg").read_bytes()
    frame = spark.createDataFrame([(1, png), (2, png), (3, jpeg), (4, None)], "id INT, content BINARY")
    frame.createOrReplaceTempView("same")
    query = "SELECT id, ai_query('i-chat', 'What is it?', files => content) AS a FROM same"
    answers = {row.id: row.a for row in spark.sql(query).collect()}
    assert answers[1] == answers[2] and len({answers[1], answers[3], answers[4]}) == 3
    # The PNG row twice (one request, or two if the rows ran in different workers at once), the JPEG, the text.
    first = gateway.stats()["requests"]
    assert 3 <= first <= 4
    again = {row.id: row.a for row in spark.sql(query).collect()}
    assert again == answers and gateway.stats()["requests"] == first  # every answer from the store, by image
    aiquery.flush_usage(spark)


def test_what_cannot_be_sent_gets_a_clear_error(spark: Any, gateway: Any, images: Path) -> None:
    (images / "notes.txt").write_bytes(b"just some text")
    (images / "big.png").write_bytes(IMAGES["a.png"] + os.urandom(5_100_000))
    spark.read.format("binaryFile").load(str(images)).createOrReplaceTempView("files")
    rows = spark.sql(
        """SELECT path, ai_query('i-claude', 'Describe.', files => content, failOnError => false) AS r FROM files"""
    ).collect()
    errors = {Path(row.path).name: row.r.errorMessage for row in rows}
    assert "not an image aiquery can send (JPEG, PNG, GIF or WEBP)" in errors["notes.txt"]
    assert "the anthropic API takes at most 5.0 MB per image" in errors["big.png"]
    assert all(errors[name] is None for name in IMAGES)
    assert gateway.stats()["requests"] == len(IMAGES)  # neither bad file was sent
    with pytest.raises(Exception, match="needs a text-generation endpoint"):
        spark.sql("SELECT ai_query('databricks-gte-large-en', 'x', files => content) FROM files").collect()
    with pytest.raises(Exception, match="must be a BINARY column"):
        spark.sql("SELECT ai_query('i-chat', 'x', files => path) FROM files").collect()
    assert gateway.stats()["requests"] == len(IMAGES)

import pytest

from memories.models import Memory, Message, VectorOperation
from memories.public_ids import public_message_id

pytestmark = pytest.mark.django_db(transaction=True)

CONVERSATION = [
    {
        "speaker": "Rosa",
        "text": "I went to a woodworking class yesterday and it was so calming.",
        "sentAt": "2023-05-08T13:56:00Z",
        "clientMessageId": "D1:3",
    },
    {
        "speaker": "Tomas",
        "text": "Wow, that's nice! What did you make?",
        "sentAt": "2023-05-08T13:57:00Z",
        "clientMessageId": "D1:4",
    },
    {
        "speaker": "Tomas",
        "text": "I painted the old lighthouse last year.",
        "sentAt": "2023-05-08T13:58:00Z",
        "clientMessageId": "D1:5",
    },
]


def import_messages(client, messages, user_id="conv-1"):
    return client.post(
        "/api/v1/memories/import",
        {"userId": user_id, "messages": messages},
        format="json",
    )


def test_import_remembers_each_message_with_its_time_and_id(client_a):
    response = import_messages(client_a, CONVERSATION)
    assert response.status_code == 200
    body = response.json()
    assert body["imported"] == 3
    assert body["messageIds"] == {
        message.client_message_id: public_message_id(message.pk)
        for message in Message.objects.all()
    }
    assert set(body["messageIds"]) == {"D1:3", "D1:4", "D1:5"}
    # Every message is also kept as said: one episode each.
    assert body["episodes"] == 3
    episodes = Memory.objects.filter(kind="episode").order_by("source_message_id")
    assert [(e.speaker, e.role, e.text) for e in episodes] == [
        (m["speaker"], "user", m["text"]) for m in CONVERSATION
    ]
    assert all(memory["kind"] == "fact" for memory in body["added"])
    texts = {memory["text"] for memory in body["added"]}
    assert "I went to a woodworking class yesterday and it was so calming." in texts
    assert "I painted the old lighthouse last year." in texts
    # The question is kept as a message, not as a memory.
    assert not any("What happened" in text for text in texts)
    support = Memory.objects.get(kind="fact", text__contains="woodworking class")
    assert support.speaker == "Rosa"
    assert support.happened_at.date().isoformat() == "2023-05-07"
    assert support.time_granularity == "day"
    lighthouse = Memory.objects.get(kind="fact", text__contains="lighthouse")
    assert lighthouse.happened_at.year == 2022
    assert lighthouse.time_granularity == "year"
    assert [m.client_message_id for m in support.sources.all()] == ["D1:3"]


def test_importing_the_same_batch_twice_stores_nothing_new(client_a):
    import_messages(client_a, CONVERSATION)
    counts = (Message.objects.count(), Memory.objects.count())
    again = import_messages(client_a, CONVERSATION).json()
    assert again["imported"] == 0
    assert sorted(again["skipped"]) == ["D1:3", "D1:4", "D1:5"]
    assert again["added"] == []
    assert again["episodes"] == 0
    assert set(again["messageIds"]) == {"D1:3", "D1:4", "D1:5"}
    assert (Message.objects.count(), Memory.objects.count()) == counts


def test_a_partly_known_batch_imports_only_the_new_messages(client_a):
    import_messages(client_a, CONVERSATION[:1])
    body = import_messages(client_a, CONVERSATION).json()
    assert body["imported"] == 2
    assert body["skipped"] == ["D1:3"]
    assert body["episodes"] == 2
    # Every clientMessageId of the batch is mapped, the known one included.
    assert body["messageIds"] == {
        message.client_message_id: public_message_id(message.pk)
        for message in Message.objects.all()
    }
    assert set(body["messageIds"]) == {"D1:3", "D1:4", "D1:5"}


def test_a_repeated_fact_adds_provenance_not_a_memory(client_a):
    import_messages(client_a, CONVERSATION[:1])
    repeat = {
        **CONVERSATION[0],
        "clientMessageId": "D9:1",
        "sentAt": "2023-06-01T10:00:00Z",
    }
    body = import_messages(client_a, [repeat]).json()
    assert body["added"] == []
    memory = Memory.objects.get(kind="fact", text__contains="woodworking class")
    assert sorted(m.client_message_id for m in memory.sources.all()) == ["D1:3", "D9:1"]
    # The same words by the same speaker are one episode too.
    assert body["episodes"] == 0
    assert Memory.objects.filter(kind="episode").count() == 1


def test_one_speakers_home_does_not_replace_anothers(client_a):
    body = import_messages(
        client_a,
        [
            {
                "speaker": "Ivo",
                "text": "I live in Boston.",
                "sentAt": "2023-01-01T10:00:00Z",
            },
            {
                "speaker": "Lea",
                "text": "I live in Denver.",
                "sentAt": "2023-01-01T10:01:00Z",
            },
            {
                "speaker": "Ivo",
                "text": "I moved to Miami.",
                "sentAt": "2023-03-01T10:00:00Z",
            },
        ],
    ).json()
    assert len(body["added"]) == 2
    (updated,) = body["updated"]
    assert updated["previousText"] == "I live in Boston."
    assert sorted(
        Memory.objects.filter(kind="fact").values_list("text", flat=True)
    ) == [
        "I live in Denver.",
        "I moved to Miami.",
    ]
    assert body["episodes"] == 3


def test_assistant_messages_are_context_not_memories(client_a):
    body = import_messages(
        client_a,
        [
            {
                "role": "assistant",
                "text": "I am a helpful assistant with a cat.",
                "sentAt": "2023-01-01T10:00:00Z",
            }
        ],
    ).json()
    assert body["imported"] == 1
    assert body["added"] == []
    # Kept as what the assistant said, not as a fact about the user.
    assert body["episodes"] == 1
    (episode,) = Memory.objects.all()
    assert (episode.kind, episode.role) == ("episode", "assistant")


@pytest.mark.parametrize(
    ("change", "field_path"),
    [
        ({"sentAt": "yesterday"}, ("messages", "1", "sentAt")),
        ({"sentAt": None}, ("messages", "1", "sentAt")),
        ({"text": ""}, ("messages", "1", "text")),
        ({"role": "robot"}, ("messages", "1", "role")),
    ],
)
def test_one_bad_message_rejects_the_whole_batch(client_a, change, field_path):
    batch = [CONVERSATION[0], {**CONVERSATION[1], **change}, CONVERSATION[2]]
    response = import_messages(client_a, batch)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    node = error["details"]["fields"]
    for key in field_path:
        node = node[key] if isinstance(node, dict) else node[int(key)]
    assert node
    assert Message.objects.count() == 0
    assert Memory.objects.count() == 0


def test_a_repeated_client_message_id_is_one_message_like_a_retry(client_a):
    repeat = {**CONVERSATION[1], "clientMessageId": "D1:3"}
    batch = [CONVERSATION[0], repeat, CONVERSATION[2], CONVERSATION[0]]
    response = import_messages(client_a, batch)
    assert response.status_code == 200, response.content
    body = response.json()
    # The first message of each id is stored; a later one is skipped, as the
    # same message sent again in another request would be.
    assert body["imported"] == 2
    assert body["skipped"] == ["D1:3"]
    assert body["episodes"] == 2
    stored = {m.client_message_id: m.text for m in Message.objects.all()}
    assert stored == {"D1:3": CONVERSATION[0]["text"], "D1:5": CONVERSATION[2]["text"]}
    assert set(body["messageIds"]) == {"D1:3", "D1:5"}
    # Sent again, the batch stores nothing new.
    again = import_messages(client_a, batch).json()
    assert (again["imported"], again["skipped"]) == (0, ["D1:3", "D1:5"])


def test_a_batch_over_the_limit_is_rejected_whole(client_a, settings):
    limit = settings.LTM_IMPORT_MAX_MESSAGES
    batch = [
        {"text": f"I own {i} books.", "sentAt": "2023-01-01T10:00:00Z"}
        for i in range(limit + 1)
    ]
    response = import_messages(client_a, batch)
    assert response.status_code == 400
    field = response.json()["error"]["details"]["fields"]["messages"]
    assert field["non_field_errors"][0]["code"] == "max_length"
    assert str(limit) in field["non_field_errors"][0]["message"]
    assert Message.objects.count() == 0


def test_an_empty_batch_is_rejected(client_a):
    response = import_messages(client_a, [])
    assert response.status_code == 400
    assert Message.objects.count() == 0


def test_an_import_writes_the_vector_index_in_one_batch(client_a, vector_store):
    calls = []
    original = vector_store.put

    def counting_put(**kwargs):
        calls.append(len(kwargs["records"]))
        return original(**kwargs)

    vector_store.put = counting_put
    body = import_messages(client_a, CONVERSATION).json()
    # Facts and episodes alike, in one call.
    assert calls == [len(body["added"]) + body["episodes"]]
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()


def test_two_speakers_saying_the_same_words_are_two_facts(client_a):
    said = {"text": "I play the violin.", "sentAt": "2023-01-01T10:00:00Z"}
    body = import_messages(
        client_a, [{**said, "speaker": "Ivo"}, {**said, "speaker": "Lea"}]
    ).json()
    assert sorted(m["text"] for m in body["added"]) == ["I play the violin."] * 2
    facts = Memory.objects.filter(kind="fact")
    assert sorted(f.speaker for f in facts) == ["Ivo", "Lea"]
    assert len({f.content_hash for f in facts}) == 2


def test_a_long_message_is_kept_in_passages(client_a, settings):
    words = [f"word{i}" for i in range(2 * settings.LTM_PASSAGE_WORDS + 10)]
    body = import_messages(
        client_a, [{"text": " ".join(words), "sentAt": "2023-01-01T10:00:00Z"}]
    ).json()
    assert body["episodes"] == 3
    passages = Memory.objects.filter(kind="episode").order_by("passage")
    assert [p.passage for p in passages] == [0, 1, 2]
    assert " ".join(p.text for p in passages) == " ".join(words)
    assert all(len(p.text.split()) <= settings.LTM_PASSAGE_WORDS for p in passages)


def test_an_imported_message_may_be_longer_than_a_chat_message(client_a):
    text = "I like tea. " * 4000  # 48,000 characters: over LTM_MAX_MESSAGE_CHARS
    body = import_messages(
        client_a, [{"text": text, "sentAt": "2023-01-01T10:00:00Z"}]
    ).json()
    assert body["imported"] == 1


def test_an_imported_message_over_its_limit_is_refused(client_a):
    text = "x" * 400_001
    response = import_messages(
        client_a, [{"text": text, "sentAt": "2023-01-01T10:00:00Z"}]
    )
    assert response.status_code == 400
    field = response.json()["error"]["details"]["fields"]["messages"]
    assert field["0"]["text"][0]["code"] == "max_length"
    assert Message.objects.count() == 0


def _five_messages(with_ids=True):
    return [
        {
            "text": f"Note {n}: my {word} shelf holds {n} jars of {word} jam.",
            "sentAt": f"2024-03-0{n}T10:00:00Z",
            **({"clientMessageId": f"m{n}"} if with_ids else {}),
        }
        for n, word in enumerate(["plum", "fig", "quince", "cherry", "apricot"], 1)
    ]


def test_an_import_that_runs_out_of_time_stores_whole_messages_and_resumes(
    client_a, settings
):
    # One message per part, and no time to start a second part.
    settings.LTM_IMPORT_PART_PASSAGES = 1
    settings.LTM_IMPORT_TIME_BUDGET_SECONDS = 1e-6
    batch = _five_messages()
    answers = [import_messages(client_a, batch) for _ in range(5)]

    for sent, response in enumerate(answers[:4], 1):
        assert response.status_code == 503
        assert response["Retry-After"] == "0"
        error = response.json()["error"]
        assert error["code"] == "import_incomplete"
        assert error["details"]["imported"] == 1
        assert error["details"]["remaining"] == 5 - sent
        assert error["details"]["resumeFrom"] == sent
        assert set(error["details"]["messageIds"]) == {
            f"m{n}" for n in range(1, sent + 1)
        }
    assert answers[4].status_code == 200
    body = answers[4].json()
    assert body["imported"] == 1
    assert body["skipped"] == ["m1", "m2", "m3", "m4"]
    assert body["messageIds"] == {
        message.client_message_id: public_message_id(message.pk)
        for message in Message.objects.all()
    }
    # Every message once, each with its episode; none half-written.
    assert Message.objects.count() == 5
    assert Memory.objects.filter(kind="episode", status="active").count() == 5
    for word in ["plum", "fig", "quince", "cherry", "apricot"]:
        hits = client_a.post(
            "/api/v1/memories/search",
            {"userId": "conv-1", "query": f"{word} jam", "topK": 3},
            format="json",
        ).json()["hits"]
        assert any(word in hit["text"] for hit in hits), word


def test_an_unfinished_import_without_client_ids_says_where_to_resume(
    client_a, settings
):
    settings.LTM_IMPORT_TIME_BUDGET_SECONDS = 1e-6
    batch = _five_messages(with_ids=False)
    first = import_messages(client_a, batch)
    assert first.status_code == 503
    details = first.json()["error"]["details"]
    assert details == {"imported": 1, "remaining": 4, "resumeFrom": 1, "messageIds": {}}

    settings.LTM_IMPORT_TIME_BUDGET_SECONDS = 30
    rest = import_messages(client_a, batch[details["resumeFrom"] :])
    assert rest.status_code == 200
    assert rest.json()["imported"] == 4
    assert sorted(Message.objects.values_list("text", flat=True)) == sorted(
        message["text"] for message in batch
    )


def test_where_to_resume_is_a_position_in_the_batch_as_sent(client_a, settings):
    settings.LTM_IMPORT_PART_PASSAGES = 1
    settings.LTM_IMPORT_TIME_BUDGET_SECONDS = 1e-6
    first, *rest = _five_messages()
    # The repeat of m1 is skipped: the next message to store is m2, at 2.
    batch = [first, {**rest[0], "clientMessageId": "m1"}, *rest]
    response = import_messages(client_a, batch)
    assert response.status_code == 503
    details = response.json()["error"]["details"]
    assert (details["imported"], details["remaining"], details["resumeFrom"]) == (
        1,
        4,
        2,
    )
    assert batch[details["resumeFrom"]]["clientMessageId"] == "m2"


def test_a_large_batch_within_the_time_budget_is_stored_in_parts_with_one_answer(
    client_a, settings
):
    settings.LTM_IMPORT_PART_PASSAGES = 2
    response = import_messages(client_a, _five_messages())
    assert response.status_code == 200
    assert response.json()["imported"] == 5
    # Context crosses the parts' edges as it does inside one: the second
    # message's memories carry the third's words.
    second = Memory.objects.get(kind="episode", source_message__client_message_id="m2")
    assert "quince" in second.context_text

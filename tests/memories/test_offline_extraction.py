"""The offline extractor's rules and its time resolution, on fixed examples."""

from datetime import UTC, datetime

import pytest

from memories.extraction.timeexpr import resolve_time
from memories.providers.llm import OfflineLanguageModel, to_second_person

# A Tuesday.
SENT_AT = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


def extract(message: str):
    return OfflineLanguageModel().extract_facts(message=message, sent_at=SENT_AT)


def test_clauses_about_the_speaker_become_separate_facts():
    facts = extract("I moved to Lisbon last month and I am allergic to peanuts.")
    assert [fact.text for fact in facts] == [
        "I moved to Lisbon last month.",
        "I am allergic to peanuts.",
    ]
    assert [fact.slot for fact in facts] == ["home", ""]


@pytest.mark.parametrize(
    "message",
    [
        "Where do I live?",
        "what is my name",
        "Do you remember my dog?",
        "Hi!",
        "Thanks.",
        "ok",
        "I see.",
        "I'm fine, thanks!",
        "Please tell me a joke.",
        "I want you to write a poem.",
        "Tell me about Lisbon.",
        "The weather is nice.",
    ],
)
def test_questions_small_talk_and_requests_are_not_facts(message):
    assert extract(message) == []


@pytest.mark.parametrize(
    ("message", "slot"),
    [
        ("My name is Ana.", "name"),
        ("I live in Porto.", "home"),
        ("I work as a nurse at Santa Maria.", "job"),
        ("I'm 34 years old.", "age"),
        ("My favourite colour is green.", "favourite:colour"),
        ("I have two cats.", ""),
    ],
)
def test_facts_of_which_a_person_has_one_get_a_slot(message, slot):
    (fact,) = extract(message)
    assert fact.slot == slot


@pytest.mark.parametrize(
    ("expression", "expected", "granularity"),
    [
        ("yesterday", datetime(2026, 11, 23, tzinfo=UTC), "day"),
        ("today", datetime(2026, 11, 24, tzinfo=UTC), "day"),
        ("tomorrow", datetime(2026, 11, 25, tzinfo=UTC), "day"),
        ("last month", datetime(2026, 10, 1, tzinfo=UTC), "month"),
        ("next month", datetime(2026, 12, 1, tzinfo=UTC), "month"),
        ("last year", datetime(2025, 1, 1, tzinfo=UTC), "year"),
        ("3 days ago", datetime(2026, 11, 21, tzinfo=UTC), "day"),
        ("two weeks ago", datetime(2026, 11, 10, tzinfo=UTC), "week"),
        ("next Friday", datetime(2026, 11, 27, tzinfo=UTC), "day"),
        ("last Friday", datetime(2026, 11, 20, tzinfo=UTC), "day"),
        ("next Tuesday", datetime(2026, 12, 1, tzinfo=UTC), "day"),
        ("on March 3rd", datetime(2026, 3, 3, tzinfo=UTC), "day"),
        ("on 5 May 2023", datetime(2023, 5, 5, tzinfo=UTC), "day"),
        ("on 2024-02-29", datetime(2024, 2, 29, tzinfo=UTC), "day"),
        ("in 2019", datetime(2019, 1, 1, tzinfo=UTC), "year"),
        ("in June", datetime(2026, 6, 1, tzinfo=UTC), "month"),
    ],
)
def test_relative_dates_are_resolved_against_the_message_time(
    expression, expected, granularity
):
    resolved = resolve_time(f"I went hiking {expression}.", now=SENT_AT)
    assert resolved is not None
    assert resolved.when == expected
    assert resolved.granularity == granularity


def test_an_impossible_date_is_not_resolved():
    assert resolve_time("I was born on 2023-02-30.", now=SENT_AT) is None


def test_a_dated_fact_carries_its_date():
    (fact,) = extract("I adopted a puppy yesterday.")
    assert fact.happened_at == datetime(2026, 11, 23, tzinfo=UTC)
    assert fact.time_granularity == "day"


def test_replies_address_the_user_in_the_second_person():
    assert (
        to_second_person("I am allergic to my cat.") == "You are allergic to your cat."
    )
    assert to_second_person("My sister visited me.") == "Your sister visited you."

"""Offline extraction rules: which clauses of a message are facts worth keeping,
and which slot (a thing a person has one of) a fact fills."""

import re

from memories.text import content_words

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# A new clause whose subject is the speaker: "..., and I am allergic to peanuts".
_CLAUSE_SPLIT = re.compile(
    r"\s*(?:,|;)?\s+(?:and|but|so|also|plus)\s+(?=(?:i|i'm|i've|i'd|i'll|my|we|"
    r"we're|we've|our)\b)|\s*;\s*",
    re.I,
)
_FIRST_PERSON = re.compile(
    r"\b(?:i|i'm|i've|i'd|i'll|im|we|we're|we've|my|our|mine)\b", re.I
)
_QUESTION_START = re.compile(
    r"^(?:what|where|when|who|whom|whose|why|how|which|do|does|did|can|could|"
    r"would|will|shall|should|is|are|am|was|were|have|has|may|might)\b",
    re.I,
)
_SMALL_TALK = re.compile(
    r"^(?:hi|hello|hey|thanks|thank you|ok|okay|cool|great|nice|sure|yes|no|yeah|"
    r"nope|bye|goodbye|good (?:morning|night|evening|afternoon)|lol|haha|hmm)\b"
    r"[\s!.,]*$",
    re.I,
)
_PHATIC = re.compile(
    r"^(?:i|we) (?:see|agree|know|guess|understand|mean|hope so|think so|don't know|"
    r"do not know|am not sure|wonder\b.*)\W*$"
    r"|^(?:i'm|i am) (?:fine|good|ok|okay|well|not sure|sure|back|here|sorry)"
    r"(?:[\s,]+(?:thanks|thank you|too|as well))?\W*$",
    re.I,
)
# Instructions to the assistant are not facts about the user.
_REQUEST = re.compile(
    r"^(?:please\b|(?:i|we) (?:want|need|would like|'d like) you\b|"
    r"(?:i|we)'d like you\b|(?:i|we) (?:want|need) to know\b|remind me\b|tell me\b|"
    r"(?:can|could) you\b|let me know\b)",
    re.I,
)
_LEADING_FILLER = re.compile(
    r"^(?:(?:and|but|so|also|well|oh|btw|by the way|actually|anyway|also)\b[\s,]*)+",
    re.I,
)
# Facts of which a person has one at a time: a new one replaces the old.
_SLOTS = [
    ("name", re.compile(r"\b(?:my name is|call me|i'm called|i am called)\b", re.I)),
    (
        "home",
        re.compile(
            r"\b(?:i live|i'm living|i am living|we live|i moved|i've moved|"
            r"i have moved|we moved|i relocated|my home is|i'm based|i am based)\b",
            re.I,
        ),
    ),
    (
        "job",
        re.compile(
            r"\b(?:i work (?:as|at|for)|i'm working (?:as|at|for)|i am working "
            r"(?:as|at|for)|my job is|my occupation|i am employed|i'm employed)\b",
            re.I,
        ),
    ),
    ("age", re.compile(r"\b(?:i'm|i am) \d{1,3} (?:years old|yo)\b|\bmy age\b", re.I)),
    ("birthday", re.compile(r"\bmy birthday is\b", re.I)),
]
# Words by which a forget request names a slot's topic.
SLOT_TOPICS = {
    "name": {"name", "called"},
    "home": {"home", "live", "living", "address", "city", "moved", "location"},
    "job": {"job", "work", "career", "occupation", "employer", "profession"},
    "age": {"age", "old"},
    "birthday": {"birthday", "born"},
}
_FAVOURITE = re.compile(r"\bmy (?:favou?rite|fav) (\w+)", re.I)

FORGET_PREFIX = re.compile(
    r"^\s*(?:please\s+)?(?:can you\s+|could you\s+)?(?:forget|delete|remove|erase)"
    r"\s+(?:(?:about|that|the fact that|everything about|all about|anything about|"
    r"what i said about|what you know about|my)\s+)*",
    re.I,
)
FORGET_TOPIC = re.compile(
    r"\b(?:everything|all|anything)\s+(?:about|regarding|on)\b|\bforget about\b",
    re.I,
)


def split_clauses(message: str) -> list[str]:
    """Sentences of a message, with clauses joined by 'and I ...' split apart."""
    clauses = []
    for sentence in _SENTENCE_END.split(message):
        for clause in _CLAUSE_SPLIT.split(sentence):
            clause = _LEADING_FILLER.sub("", clause.strip()).strip(" ,")
            if clause:
                clauses.append(clause)
    return clauses


# A "fact" longer than this is a paragraph, code or a list: it is kept as what
# was said (an episode) rather than as one fact.
MAX_FACT_WORDS = 50


def _is_a_statement(clause: str) -> bool:
    """Not too long to be one fact, not a question, small talk or a request."""
    if len(clause.split()) > MAX_FACT_WORDS:
        return False
    if clause.endswith("?") or _QUESTION_START.match(clause):
        return False
    return not (
        _SMALL_TALK.match(clause) or _PHATIC.match(clause) or _REQUEST.match(clause)
    )


def is_fact_worth_keeping(clause: str) -> bool:
    """A first-person statement that is not a question, small talk or a request."""
    return (
        _is_a_statement(clause)
        and len(clause.split()) >= 2
        and bool(_FIRST_PERSON.search(clause))
    )


def is_statement_worth_keeping(clause: str) -> bool:
    """Any statement with some content: not a question, small talk or a request."""
    return _is_a_statement(clause) and len(content_words(clause)) >= 2


def slot_of(clause: str) -> str:
    for slot, pattern in _SLOTS:
        if pattern.search(clause):
            return slot
    favourite = _FAVOURITE.search(clause)
    if favourite:
        return f"favourite:{favourite.group(1).lower()}"
    return ""


def to_second_person(text: str) -> str:
    """The user's own words, rewritten to address them ("I am" -> "you are")."""
    replacements = [
        (r"\bI am\b", "you are"),
        (r"\bI'm\b", "you're"),
        (r"\bI was\b", "you were"),
        (r"\bI've\b", "you've"),
        (r"\bI'd\b", "you'd"),
        (r"\bI'll\b", "you'll"),
        (r"\bI\b", "you"),
        (r"\bmyself\b", "yourself"),
        (r"\bmy\b", "your"),
        (r"\bMy\b", "Your"),
        (r"\bmine\b", "yours"),
        (r"\bme\b", "you"),
    ]
    for pattern, replacement in replacements:
        text = re.sub(pattern, replacement, text)
    return text[:1].upper() + text[1:]

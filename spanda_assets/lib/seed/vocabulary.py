"""The words the demo data is made of, read from `spanda_assets/schemas/seed/*.yaml`.

The lists are data, not code, so they can be read and extended without touching
the generator. They are loaded on first use and cached: importing the seed
package (which the CLI does on every start) stays cheap. Student and instructor
names come from Faker's en_US lists, which are loaded here too so the generator
draws every word through one `Vocabulary`.

Order in the files matters: the generator draws by position, so the same seed
gives the same rows only while the lists stay as they are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml  # here, not at the top: importing the seed package reads no YAML

DATA_FILES = ("places", "school", "posts")

Place = tuple[str, str, str]  # (city, state, ZIP3)


@dataclass(frozen=True)
class Vocabulary:
    places: tuple[Place, ...]  # populous ZIP3 areas first, then every restricted one
    restricted_places: tuple[Place, ...]
    streets: tuple[str, ...]
    street_kinds: tuple[str, ...]
    subjects: dict[str, tuple[str, ...]]  # subject -> course titles, in file order
    terms: tuple[str, ...]
    grade_levels: tuple[str, ...]
    statuses: tuple[str, ...]
    assessments: tuple[str, ...]
    email_domains: tuple[str, ...]
    instructor_titles: tuple[str, ...]
    collection_methods: tuple[str, ...]
    notice_versions: tuple[str, ...]
    urgent: tuple[str, ...]
    routine: tuple[str, ...]
    pii_sentences: tuple[str, ...]
    topics: tuple[str, ...]
    link_hosts: tuple[str, ...]
    months: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]

    @property
    def open_places(self) -> tuple[Place, ...]:
        """Places outside the restricted ZIP3 areas."""
        return self.places[: len(self.places) - len(self.restricted_places)]


def read_data_file(name: str) -> dict[str, Any]:
    """One packaged vocabulary file as parsed YAML (a mapping of list name to list)."""
    path = resources.files("spanda_assets").joinpath(f"schemas/seed/{name}.yaml")
    data = yaml.safe_load(path.read_text("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"seed vocabulary file {name}.yaml must hold a mapping")
    return data


@functools.cache
def vocabulary() -> Vocabulary:
    """The packaged vocabulary, read once per process."""
    from faker.providers.person.en_US import Provider as Person

    places, school, posts = (read_data_file(n) for n in DATA_FILES)
    open_places = _places(places, "places")
    restricted = _places(places, "restricted_places")
    subjects = school.get("subjects")
    if not isinstance(subjects, dict) or not subjects:
        raise ValueError("seed vocabulary: school.yaml `subjects` must be a non-empty mapping")
    return Vocabulary(
        places=open_places + restricted,
        restricted_places=restricted,
        streets=_words(places, "streets"),
        street_kinds=_words(places, "street_kinds"),
        subjects={str(k): _words(subjects, k) for k in subjects},
        terms=_words(school, "terms"),
        grade_levels=_words(school, "grade_levels"),
        statuses=_words(school, "statuses"),
        assessments=_words(school, "assessments"),
        email_domains=_words(school, "email_domains"),
        instructor_titles=_words(school, "instructor_titles"),
        collection_methods=_words(school, "collection_methods"),
        notice_versions=_words(school, "notice_versions"),
        urgent=_words(posts, "urgent"),
        routine=_words(posts, "routine"),
        pii_sentences=_words(posts, "pii_sentences"),
        topics=_words(posts, "topics"),
        link_hosts=_words(posts, "link_hosts"),
        months=_words(posts, "months"),
        first_names=tuple(Person.first_names_female) + tuple(Person.first_names_male),
        last_names=tuple(Person.last_names),
    )


def _words(data: dict[str, Any], key: str) -> tuple[str, ...]:
    # Strings only: an unquoted `09` or `yes` would silently become a number or a bool.
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"seed vocabulary: `{key}` must be a non-empty list of strings")
    return tuple(value)


def _places(data: dict[str, Any], key: str) -> tuple[Place, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise ValueError(f"seed vocabulary: `{key}` must be a non-empty list of places")
    out: list[Place] = []
    for p in value:
        if not (isinstance(p, list) and len(p) == 3 and all(isinstance(x, str) for x in p)):
            raise ValueError(f"seed vocabulary: `{key}` entry {p!r} is not [city, state, ZIP3]")
        out.append((p[0], p[1], p[2]))
    return tuple(out)

"""`--rules FILE`: a JSON or YAML rules document, validated exactly like PUT /v1/rules."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

from availability import InvalidRules, Rules, decode_rules, rules_from_object
from availability.decoding import ANY_JSON, decoded


def load_rules_file(path: str) -> Rules:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidRules(f"cannot read rules file {path}: {exc.strerror}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidRules(f"{path} is not valid YAML: {exc}") from None
        return rules_from_object(document)
    try:
        decoded(ANY_JSON, text)
    except msgspec.DecodeError as exc:
        raise InvalidRules(f"{path} is not valid JSON: {exc}") from None
    return decode_rules(text)

"""The engine's messages name command-line flags (``pass -d DATA``, ``--device cuda: …``);
the app's user has fields instead. ``field_words`` says the same with the form's labels;
``APP_RESUME_WORDS`` words a resume the engine decided."""

from __future__ import annotations

import re

from tui_eval.config import KEYS
from tui_eval.events import ResumeWords

# A run found in the output directory: the app's hint says to choose another directory.
APP_RESUME_WORDS = ResumeWords(resume_auto="resume_auto_app", complete="already_complete_app")

# The demo's two messages say more than a flag: the app's own sentence.
WHOLE = {
    "pass -m MODEL (or neither -m nor -d to run the demo)":
        "fill in the model field (or leave model and data empty to run the demo)",
    "pass -d DATA (or neither -m nor -d to run the demo)":
        "fill in the data field (or leave model and data empty to run the demo)",
}
# a flag, then its metavar (MODEL) or the value given to it ("8", "cuda:", "a/b")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])"
                  r"(?: (?P<metavar>[A-Z][A-Z_]*\b)"
                  r"| (?P<value>\d[\w.]*|[\w.+-]+(?=:)|[\w.+-]*/[\w./+-]*))?")
KEY_OF_FLAG = {flag: key for key in KEYS.values() for flag in key.flags}


def field_words(text: str) -> str:
    for cli, app in WHOLE.items():
        text = text.replace(cli, app)

    def field(match: re.Match[str]) -> str:
        key = KEY_OF_FLAG.get(match.group(1))
        if key is None:  # a flag with no field (--overwrite): as it is
            return match.group(0)
        if key.rule.type == "bool":  # takes no value: what follows is the sentence's
            return f'the "{key.label}" field' + match.group(0)[len(match.group(1)):]
        if match.group("value") is not None:
            return f'{key.label} {match.group("value")}'
        return f'the "{key.label}" field'

    return FLAG.sub(field, text)

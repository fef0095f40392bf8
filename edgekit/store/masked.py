"""Stored text as a report or a listing may show it: the secrets a command in it may carry masked.

The transport masks a proxy command where it words an error (transport/proxy_text.py), but a run imported with
`edgekit runs import`, or recorded by an older edgekit, may hold one whole: `connect: ProxyCommand sshpass -p
hunter2secret ssh -W %h:%p jump@bastion` was shown verbatim in the report's device facts. Imports mask it on the
way in (`masked_result`); the renderers pass every stored error through `masked_text` as well.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgekit.results import DeployResult
from edgekit.transport.proxy_text import MASK, masked_headers, masked_word, secret_after

_SEPARATED = re.compile(r"(\s+)")
_QUOTES = "`'\"()[]{}<>,;"


def masked_text(text: str | None) -> str:
    """`text` with what transport/proxy_text.masked_command masks in a command masked wherever it stands in the
    sentence: the value after `sshpass -p`, after an option named as a secret (`--token X`, `--auth X`), after
    `-p`/`-P` but for a port or a path, of `NAME=X` named as one, a URL's password, and an HTTP credential
    (`Authorization: Bearer X`). Spacing and the words around them are kept as they were."""
    if not text:
        return text or ""
    parts = _SEPARATED.split(masked_headers(text))
    words = [i for i, part in enumerate(parts) if part and not part.isspace()]
    secret_next = after_sshpass = False
    for n, i in enumerate(words):
        bare = parts[i].strip(_QUOTES)
        if secret_next:
            parts[i] = parts[i].replace(bare, MASK) if bare else MASK
            secret_next = False
            continue
        if after_sshpass and bare.startswith("-p"):
            if bare == "-p":
                secret_next = True
            else:
                parts[i] = parts[i].replace(bare, f"-p{MASK}")
            continue
        after_sshpass = Path(bare).name == "sshpass" or (after_sshpass and bare.startswith("-"))
        if bare.startswith("-") and "=" not in bare:  # `--token X`, `-P X`: the next word is the secret
            following = parts[words[n + 1]].strip(_QUOTES) if n + 1 < len(words) else ""
            secret_next = secret_after(bare, following)
            continue
        shown = masked_word(bare)  # NAME=secret, a URL's password
        if shown != bare:
            parts[i] = parts[i].replace(bare, shown)
    return "".join(parts)


def masked_result(result: DeployResult) -> DeployResult:
    """`result` with every stored error text (a target's, an artifact's, a measurement's, the agent's) masked
    as `masked_text` does: what `edgekit runs import` records."""
    return DeployResult.model_validate(_masked(result.model_dump(mode="json")))


def _masked(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: masked_text(v) if isinstance(v, str) and k.endswith("error") else _masked(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_masked(v) for v in node]
    return node

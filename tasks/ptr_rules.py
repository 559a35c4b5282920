"""PTR rules (Han et al. 2021, "PTR: Prompt Tuning with Rules for Text Classification").

A task's rules split its decision into sub-prompts, each with its own answer slot and its own
label words; a label is the conjunction of one word per sub-prompt, and its score is the sum
of the sub-answers' log-probabilities (``methods/ptr.py``). As data: the sub-prompts' names,
and two compositions of them, as ``Prompt`` records whose template has one ``{mask}`` per
sub-prompt and whose words are, per label, a tuple of sub-words in slot order:

- ``default``: for a masked LM, all the slots in one input (LM-BFF's templates extended);
- ``causal``: for a next-token LM, every slot preceded by its question and the sentences
  before the first slot (a causal LM reads only what comes before each answer).

The rules are data, each task file's ``[ptr]`` table (``tasks/builtin/*.toml``). They are
written for the tasks where a decomposition makes sense: binary sentiment (single sentence), NLI (3-way as two yes/no questions whose answers combine: "implies?" and
"contradicts?"; 2-way), question answering (QNLI) and paraphrase. Every word is one token on
every offline backbone (tiny ones included). Tasks without rules: ``ptr`` refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.base import Prompt


@dataclass(frozen=True)
class Rules:
    sub_prompts: tuple[str, ...]  # what each slot asks, in slot order
    prompts: dict[str, Prompt]  # "default" (one input, several masks) and "causal"

    def __post_init__(self) -> None:
        for name, p in self.prompts.items():
            if p.template.count("{mask}") != len(self.sub_prompts):
                raise ValueError(
                    f"PTR rules {name}: {p.template!r} needs one {{mask}} per sub-prompt "
                    f"{self.sub_prompts}"
                )


# Task name -> its rules, read from the task files' ``[ptr]`` tables (``tasks/builtin/*.toml``
# and a user's own task files); filled by ``tasks`` when it loads them.
RULES: dict[str, Rules] = {}

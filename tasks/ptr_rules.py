"""PTR rules (Han et al. 2021, "PTR: Prompt Tuning with Rules for Text Classification").

A task's rules split its decision into sub-prompts, each with its own answer slot and its own
label words; a label is the conjunction of one word per sub-prompt, and its score is the sum
of the sub-answers' log-probabilities (``methods/ptr.py``). As data: the sub-prompts' names,
and two compositions of them, as ``Prompt`` records whose template has one ``{mask}`` per
sub-prompt and whose words are, per label, a tuple of sub-words in slot order:

- ``default``: for a masked LM, all the slots in one input (LM-BFF's templates extended);
- ``causal``: for a next-token LM, every slot preceded by its question and the sentences
  before the first slot (a causal LM reads only what comes before each answer).

Rules are written for the tasks where a decomposition makes sense: binary sentiment (single
sentence), NLI (3-way as two yes/no questions whose answers combine: "implies?" and
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


SENTIMENT = Rules(
    sub_prompts=("how it was", "sentiment"),
    prompts={
        "default": Prompt(
            "{s1} It was{mask}. The review is{mask}.",
            (("terrible", "negative"), ("great", "positive")),
        ),
        "causal": Prompt(
            "Review: {s1}\nIn one word, it was{mask}\nSentiment:{mask}",
            (("terrible", "negative"), ("great", "positive")),
        ),
    },
)

# MNLI/SNLI labels: contradiction, entailment, neutral. Two yes/no questions; the third label
# is the one where both answers are "No".
NLI3 = Rules(
    sub_prompts=("premise implies hypothesis", "premise contradicts hypothesis"),
    prompts={
        "default": Prompt(
            "{s1}?{mask}, {s2} Is it wrong?{mask}.",
            (("No", "Yes"), ("Yes", "No"), ("No", "No")),
            s1="drop_last",
            s2="lower_first",
        ),
        "causal": Prompt(
            "{s1}\nHypothesis: {s2}\nDoes the text imply the hypothesis? Yes or No?\nAnswer:{mask}"
            "\nDoes the text contradict the hypothesis? Yes or No?\nAnswer:{mask}",
            (("No", "Yes"), ("Yes", "No"), ("No", "No")),
        ),
    },
)

# RTE labels: entailment, not_entailment.
NLI2 = Rules(
    sub_prompts=("premise implies hypothesis", "hypothesis is correct"),
    prompts={
        "default": Prompt(
            "{s1}?{mask}, {s2} That is{mask}.",
            (("Yes", "correct"), ("No", "incorrect")),
            s1="drop_last",
            s2="lower_first",
        ),
        "causal": Prompt(
            "{s1}\nHypothesis: {s2}\nDoes the text imply the hypothesis? Yes or No?\nAnswer:{mask}"
            "\nIs the hypothesis correct or incorrect?\nAnswer:{mask}",
            (("Yes", "correct"), ("No", "incorrect")),
        ),
    },
)

# QNLI labels: entailment, not_entailment (the sentence answers the question, or not).
QNLI = Rules(
    sub_prompts=("sentence answers question", "answer is right"),
    prompts={
        "default": Prompt(
            "{s1}?{mask}, {s2} That is{mask}.",
            (("Yes", "right"), ("No", "wrong")),
            s1="drop_last",
            s2="lower_first",
        ),
        "causal": Prompt(
            "Question: {s1}\nSentence: {s2}\nDoes the sentence answer the question? Yes or No?"
            "\nAnswer:{mask}\nIs the sentence a right or wrong answer?\nAnswer:{mask}",
            (("Yes", "right"), ("No", "wrong")),
        ),
    },
)

# MRPC/QQP labels: 0 (not paraphrases), 1 (paraphrases).
PARAPHRASE = Rules(
    sub_prompts=("same meaning", "paraphrase quality"),
    prompts={
        "default": Prompt(
            "{s1}{mask}, {s2} A{mask} paraphrase.",
            (("No", "bad"), ("Yes", "good")),
            s2="lower_first",
        ),
        "causal": Prompt(
            "Sentence 1: {s1}\nSentence 2: {s2}\nDo they mean the same thing? Yes or No?"
            "\nAnswer:{mask}\nIs sentence 2 a good or bad paraphrase of sentence 1?\nAnswer:{mask}",
            (("No", "bad"), ("Yes", "good")),
        ),
    },
)

RULES: dict[str, Rules] = {
    "SST-2": SENTIMENT,
    "GLUE-SST-2": SENTIMENT,
    "mr": SENTIMENT,
    "cr": SENTIMENT,
    "mpqa": SENTIMENT,
    "MNLI": NLI3,
    "SNLI": NLI3,
    "RTE": NLI2,
    "QNLI": QNLI,
    "MRPC": PARAPHRASE,
    "QQP": PARAPHRASE,
}

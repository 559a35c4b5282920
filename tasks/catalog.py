"""The task records: LM-BFF's 15 tasks plus GLUE-SST-2, one short declaration each.

Templates and label words are LM-BFF's manual prompts (Gao et al. 2021, Table 1). The
``causal`` variants are phrasings that suit a next-token LM (measured on SmolLM2-135M; see
README); they are named prompt variants, never silently substituted.
"""

from __future__ import annotations

from tasks.base import Files, Prompt, Task

# Shared prompts (LM-BFF Table 1).
SENTIMENT = Prompt("{s1} It was{mask}.", ("terrible", "great"))
SENTIMENT_CAUSAL = Prompt(
    "Review: {s1}\nSentiment:{mask}", ("negative", "positive"), note="causal-LM phrasing"
)
NLI3 = Prompt("{s1}?{mask}, {s2}", ("No", "Yes", "Maybe"), s1="drop_last", s2="lower_first")
NLI2 = Prompt("{s1}?{mask}, {s2}", ("Yes", "No"), s1="drop_last", s2="lower_first")
PARAPHRASE = Prompt("{s1}{mask}, {s2}", ("No", "Yes"), s2="lower_first")

# Causal-LM variants of the pair prompts: the answer must come last on a next-token LM.
NLI3_CAUSAL = Prompt(
    "{s1}\nQuestion: {s2} Yes, No or Maybe?\nAnswer:{mask}",
    ("No", "Yes", "Maybe"),
    note="causal-LM phrasing",
)
NLI2_CAUSAL = Prompt(
    "{s1}\nQuestion: {s2} Yes or No?\nAnswer:{mask}", ("Yes", "No"), note="causal-LM phrasing"
)
QNLI_CAUSAL = Prompt(
    "Question: {s1}\nSentence: {s2}\nDoes the sentence answer the question? Yes or No?\nAnswer:{mask}",
    ("Yes", "No"),
    note="causal-LM phrasing",
)
PARAPHRASE_CAUSAL = Prompt(
    "Sentence 1: {s1}\nSentence 2: {s2}\nDo they mean the same thing? Yes or No?\nAnswer:{mask}",
    ("No", "Yes"),
    note="causal-LM phrasing",
)

CSV = Files(train="train.csv", test={"test": "test.csv"}, header=False)
GLUE = Files(train="train.tsv", test={"test": "dev.tsv"})
SAMPLED = Files(train="train.sampled-rows.tsv", test={"test": "dev.sampled-1000-rows.tsv"})


def _binary_sentiment(name: str, description: str, **kw) -> Task:
    return Task(
        name=name,
        format="csv",
        files=CSV,
        text_a=1,
        label=0,
        labels=("0", "1"),
        metrics=("acc",),
        prompt=SENTIMENT,
        prompts={"causal": SENTIMENT_CAUSAL},
        description=description,
        **kw,
    )


TASK_LIST: list[Task] = [
    Task(
        name="SST-2",
        format="tsv",
        files=GLUE,
        text_a="sentence",
        label="label",
        labels=("0", "1"),
        metrics=("acc",),
        prompt=SENTIMENT,
        prompts={"causal": SENTIMENT_CAUSAL},
        description="binary movie-review sentiment (SST)",
    ),
    Task(
        name="sst-5",
        format="csv",
        files=CSV,
        text_a=1,
        label=0,
        labels=("0", "1", "2", "3", "4"),
        metrics=("acc",),
        prompt=Prompt("{s1} It was{mask}.", ("terrible", "bad", "okay", "good", "great")),
        prompts={
            "causal": Prompt(
                "Review: {s1}\nRating (terrible, bad, okay, good, great):{mask}",
                ("terrible", "bad", "okay", "good", "great"),
            )
        },
        description="5-way movie-review sentiment (SST fine-grained)",
    ),
    _binary_sentiment("mr", "movie-review polarity (Pang & Lee 2005)"),
    # cr and mpqa: a few reviews/phrases are empty (cr stores them as one space); LM-BFF keeps
    # them, and its published splits have them
    _binary_sentiment("cr", "customer-review polarity (Hu & Liu 2004)", empty_text=True),
    _binary_sentiment("mpqa", "opinion polarity of phrases (MPQA)", empty_text=True),
    Task(
        name="subj",
        format="csv",
        files=CSV,
        text_a=1,
        label=0,
        labels=("0", "1"),
        metrics=("acc",),
        prompt=Prompt("{s1} This is{mask}.", ("subjective", "objective")),
        description="subjectivity (Pang & Lee 2004)",
    ),
    Task(
        name="trec",
        format="csv",
        files=CSV,
        text_a=1,
        label=0,
        labels=("0", "1", "2", "3", "4", "5"),
        metrics=("acc",),
        prompt=Prompt(
            "{mask}: {s1}", ("Description", "Entity", "Expression", "Human", "Location", "Number")
        ),
        prompts={
            "causal": Prompt(
                "Question: {s1}\nAnswer type:{mask}",
                ("Description", "Entity", "Expression", "Human", "Location", "Number"),
            )
        },
        description="question type (TREC, 6 coarse classes)",
    ),
    Task(
        name="CoLA",
        format="tsv",
        files=Files(train="train.tsv", test={"test": "dev.tsv"}, header=False),
        text_a=3,
        label=1,
        labels=("0", "1"),
        metrics=("mcc",),
        prompt=Prompt("{s1} This is{mask}.", ("incorrect", "correct")),
        description="linguistic acceptability (GLUE CoLA)",
    ),
    Task(
        name="MNLI",
        format="tsv",
        files=Files(
            train="train.tsv",
            test={"test_matched": "dev_matched.tsv", "test_mismatched": "dev_mismatched.tsv"},
        ),
        text_a="sentence1",
        text_b="sentence2",
        label="gold_label",
        labels=("contradiction", "entailment", "neutral"),
        metrics=("acc",),
        prompt=NLI3,
        max_length=256,
        partial_files=Files(
            train="train.sampled-rows.tsv",
            test={
                "test_matched": "dev_matched.sampled-1000-rows.tsv",
                "test_mismatched": "dev_mismatched.sampled-1000-rows.tsv",
            },
        ),
        prompts={"causal": NLI3_CAUSAL},
        description="natural language inference, 3-way (GLUE MNLI)",
    ),
    Task(
        name="SNLI",
        format="tsv",
        files=GLUE,
        text_a="sentence1",
        text_b="sentence2",
        label="gold_label",
        labels=("contradiction", "entailment", "neutral"),
        metrics=("acc",),
        prompt=NLI3,
        max_length=256,
        partial_files=SAMPLED,
        prompts={"causal": NLI3_CAUSAL},
        description="natural language inference, 3-way (SNLI)",
    ),
    Task(
        name="QNLI",
        format="tsv",
        files=GLUE,
        text_a="question",
        text_b="sentence",
        label="label",
        labels=("entailment", "not_entailment"),
        metrics=("acc",),
        prompt=NLI2,
        partial_files=Files(train="train.sampled-rows.tsv", test={"test": "dev.tsv"}),
        prompts={"causal": QNLI_CAUSAL},
        description="question-answer entailment (GLUE QNLI)",
    ),
    Task(
        name="RTE",
        format="tsv",
        files=GLUE,
        text_a="sentence1",
        text_b="sentence2",
        label="label",
        labels=("entailment", "not_entailment"),
        metrics=("acc",),
        prompt=NLI2,
        max_length=256,
        prompts={"causal": NLI2_CAUSAL},
        description="recognizing textual entailment (GLUE RTE)",
    ),
    Task(
        name="MRPC",
        format="tsv",
        files=GLUE,
        text_a="#1 String",
        text_b="#2 String",
        label="Quality",
        labels=("0", "1"),
        metrics=("f1", "acc"),
        prompt=PARAPHRASE,
        prompts={"causal": PARAPHRASE_CAUSAL},
        description="paraphrase (GLUE MRPC)",
    ),
    Task(
        name="QQP",
        format="tsv",
        files=GLUE,
        text_a="question1",
        text_b="question2",
        label="is_duplicate",
        labels=("0", "1"),
        metrics=("f1", "acc"),
        prompt=PARAPHRASE,
        partial_files=SAMPLED,
        prompts={"causal": PARAPHRASE_CAUSAL},
        description="duplicate questions (GLUE QQP)",
    ),
    Task(
        name="STS-B",
        format="tsv",
        files=GLUE,
        text_a="sentence1",
        text_b="sentence2",
        label="score",
        labels=("0", "1"),
        metrics=("pearson", "spearman"),
        prompt=PARAPHRASE,
        regression=True,
        bucket_at=2.5,
        prompts={"causal": PARAPHRASE_CAUSAL},
        description="semantic similarity, 0-5 (GLUE STS-B); sampled on the score bucketed at 2.5",
    ),
    Task(
        name="GLUE-SST-2",
        format="tsv",
        files=GLUE,
        text_a="sentence",
        label="label",
        labels=("0", "1"),
        metrics=("acc",),
        prompt=SENTIMENT,
        prompts={"causal": SENTIMENT_CAUSAL},
        description="SST-2 as GLUE ships it (67k phrase-level train rows; test = GLUE dev)",
    ),
]

"""Tokenizers for the tiny backbones, made from a fixed built-in corpus.

They are a pure function of this file (no data files, no downloads), so a tiny
backbone is the same on every machine. The label words of the task templates
are single tokens: in the WordPiece vocab as whole words, in the byte-level BPE
vocab with their leading space (" great"), because verbalizers score one token.
"""

from __future__ import annotations

import json
import string

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BertTokenizer, PreTrainedTokenizerFast, RobertaTokenizer

# Words the task templates and verbalizers use; each must be one token.
LABEL_WORDS = (
    "It was terrible bad okay good great This is subjective objective correct incorrect "
    "Description Entity Expression Human Location Number No Yes Maybe Review Sentiment "
    "positive negative Question Answer"
).split()

# A few hundred common English words, so that task text is not all characters.
CORPUS = """
the of and to a in is it you that he was for on are with as I his they be at one have this
from or had by hot but some what there we can out other were all your when up use word how
said an each she which do their time if will way about many then them would write like so
these her long make thing see him two has look more day could go come did my sound no most
number who over know water than call first people may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form much great think say help low line before
turn cause same mean differ move right boy old too does tell sentence set three want air well
also play small end put home read hand port large spell add even land here must big high such
follow act why ask men change went light kind off need house picture try us again animal point
mother world near build self earth father head stand own page should country found answer
school grow study still learn plant cover food sun four thought let keep eye never last door
between city tree cross since hard start might story saw far sea draw left late run while press
close night real life few stop open seem together next white children begin got walk example
ease paper often always music those both mark book letter until mile river car feet care second
group carry took rain eat room friend began idea fish mountain north once base hear horse cut
sure watch color face wood main enough plain girl usual young ready above ever red list though
feel talk bird soon body dog family direct pose leave song measure state product black short
film movie actor acting plot scene script story director character characters performance
best worst better worse love loved hate boring funny dull fun fine nice awful brilliant poor
wonderful moving beautiful simple stupid smart slow fast entertaining interesting not very
really quite too bit lot lots of more less than cast drama comedy action minutes hours time
what who where when why how which whose whom name city country year person people thing place
does did do is are was were be been being has have had will would can could should may might
true false right wrong yes no maybe sentence question answer premise hypothesis entail contradict
neutral opinion fact review sentiment positive negative subjective objective correct incorrect
"""


def corpus_words() -> list[str]:
    """Corpus and label words, lowercased, in order of first appearance (deterministic)."""
    seen: dict[str, None] = {}
    for word in (CORPUS + " " + " ".join(LABEL_WORDS)).lower().split():
        seen.setdefault(word, None)
    return list(seen)


# ---------------------------------------------------------------- WordPiece (tiny-bert)

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def bert_vocab() -> list[str]:
    """Specials, every printable ASCII char and its ## form, then the corpus words."""
    chars = [c for c in string.printable if not c.isspace()]
    vocab = BERT_SPECIALS + chars + ["##" + c for c in chars]
    taken = set(vocab)
    return vocab + [w for w in corpus_words() if w not in taken]


def bert_tokenizer(model_max_length: int = 512) -> BertTokenizer:
    """Uncased WordPiece tokenizer over `bert_vocab()`.

    In transformers 5 `BertTokenizer` is tokenizers-backed and takes the vocab as a
    dict; `BertTokenizerFast(vocab_file=...)` would silently ignore the file.
    """
    vocab = {token: i for i, token in enumerate(bert_vocab())}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=model_max_length)


# ------------------------------------------------- byte-level BPE (tiny-roberta, tiny-llama)

BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, RoBERTa's order
BPE_VOCAB_SIZE = 1000
LABEL_REPEATS = 100  # label words get this weight so BPE merges them whole first


def _bpe_training_lines() -> list[str]:
    """Corpus lines, then the label words: spaced (" great", verbalizers) and line-initial."""
    words = LABEL_WORDS + [w.lower() for w in LABEL_WORDS]
    spaced = [" " + " ".join(words)] * LABEL_REPEATS
    initial = [w for w in words for _ in range(LABEL_REPEATS // 5)]
    return CORPUS.strip().splitlines() + spaced + initial


def bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE on the built-in corpus (deterministic: same input, same merges)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=BPE_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_bpe_training_lines(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(pair) for pair in model["merges"]]


def roberta_tokenizer(model_max_length: int = 512) -> RobertaTokenizer:
    """RoBERTa-style tokenizer (<s> x </s>, usable <mask>) over the tiny BPE."""
    vocab, merges = bpe_vocab_and_merges()
    # lstrip: "It was <mask>." puts the space into the mask, as in roberta-base.
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, special=True, normalized=False)
    return RobertaTokenizer(
        vocab=vocab, merges=merges, mask_token=mask, model_max_length=model_max_length
    )


def llama_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Causal tokenizer over the same BPE: no special tokens added (like SmolLM2), right padding."""
    vocab, merges = bpe_vocab_and_merges()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
        model_max_length=model_max_length,
    )

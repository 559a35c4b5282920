"""PTR (Han et al. 2021, "Prompt Tuning with Rules"): the template is composed of sub-prompts,
each with its own answer slot and label words (the task's rules, ``tasks/ptr_rules.py``); a
class is a conjunction of sub-label words, one per slot, and all weights are fine-tuned.

Class scores, for M slots and C classes, where class c's word at slot j is v_j(c) and V_j is
the set of words slot j may take (the distinct v_j(c) over classes):

    score(c | x) = sum_j log p_j(v_j(c) | x),   p_j = softmax over V_j of the LM-head logits
                                                       at slot j's read position

and the loss is the cross-entropy of softmax_c(score). On a masked LM the M slots are masks in
one input; on a causal LM one input holds every sub-prompt and each is read at the token
before its answer slot (``bench.engine.prompts``), so all M sub-answers cost one forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.core.errors import TunebenchError, unknown
from bench.engine.model import TaskModel, lm_transform
from bench.engine.prompts import Encoder
from methods.base import Method, renderer, set_trainable
from methods.finetune import space  # the same search as (prompt-based) fine-tuning
from tasks import Prompt, Task
from tasks.ptr_rules import RULES


class RuleHead(nn.Module):
    """The LM head read at M answer positions, (B, M, H) -> (B, C), by the formula above.

    ``table`` is (C, M) token ids: class c's sub-label word at slot j. Only the rows of the
    words in the table are projected (as ``VerbalizerHead``)."""

    def __init__(self, model: nn.Module, table, sub_prompts=(), words=()):
        super().__init__()
        self.transform = lm_transform(model)
        decoder = model.get_output_embeddings()
        self.weight, self.bias = decoder.weight, decoder.bias  # shared with the backbone
        table = [list(row) for row in table]
        slots = len(table[0])
        vocab = [list(dict.fromkeys(row[j] for row in table)) for j in range(slots)]  # V_j
        width = max(len(v) for v in vocab)
        ids = torch.zeros(slots, width, dtype=torch.long)
        valid = torch.zeros(slots, width, dtype=torch.bool)
        pick = torch.zeros(slots, len(table), dtype=torch.long)  # index of v_j(c) in V_j
        for j, v in enumerate(vocab):
            ids[j, : len(v)] = torch.tensor(v)
            valid[j, : len(v)] = True
            pick[j] = torch.tensor([v.index(row[j]) for row in table])
        self.register_buffer("slot_ids", ids, persistent=False)  # (M, U)
        self.register_buffer("slot_valid", valid, persistent=False)  # (M, U)
        self.register_buffer("pick", pick, persistent=False)  # (M, C)
        self._describe = {"sub_prompts": list(sub_prompts), "words": [list(w) for w in words]}

    def slot_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """(B, M, H) -> (B, M, U): log p_j(w) over each slot's words (padding: -inf)."""
        h = self.transform(h)
        rows = self.weight[self.slot_ids]  # (M, U, H)
        logits = torch.einsum("bmh,muh->bmu", h, rows)
        if self.bias is not None:
            logits = logits + self.bias[self.slot_ids]
        logits = logits.masked_fill(~self.slot_valid, float("-inf"))
        return logits.log_softmax(-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, M, H) -> (B, C)
        logp = self.slot_log_probs(h)  # (B, M, U)
        index = self.pick.unsqueeze(0).expand(h.shape[0], -1, -1)  # (B, M, C)
        return logp.gather(-1, index).sum(1)

    def describe(self) -> dict:
        return {"name": "ptr-rules", **self._describe}


def rules_prompt(backbone, task: Task, hp) -> Prompt:
    """The task's rule composition for this backbone (``prompt``: auto = causal on a causal
    LM, else default); refuses a task without rules, naming those that have them."""
    rules = RULES.get(task.name)
    if rules is None:
        raise TunebenchError(
            f"method ptr has no rules for task {task.name}; tasks with PTR rules: "
            f"{', '.join(RULES)} (rules live in the [ptr] table of a task file, tasks/builtin/*.toml)"
        )
    name = hp.get("prompt", "auto")
    if name == "auto":
        name = "causal" if backbone.kind == "causal" else "default"
    if name not in rules.prompts:
        raise unknown(f"PTR rule composition of task {task.name}", name, ["auto", *rules.prompts])
    return rules.prompts[name]


def build(backbone, task, hp):
    prompt = rules_prompt(backbone, task, hp)
    enc = Encoder(
        backbone.tokenizer,
        backbone.kind,
        task,
        renderer(backbone, task, hp, "prompt", prompt=prompt),
    )
    sub_prompts = RULES[task.name].sub_prompts
    head = RuleHead(backbone.model, enc.word_ids, sub_prompts, prompt.words)
    head = head.to(next(backbone.model.parameters()).device)
    model = TaskModel(backbone, enc, head, regression=task.regression)
    set_trainable(model, lambda name, p: True)
    return model


def refuse(backbone, hp):
    if hp.get("verbalizer", "manual") != "manual":
        return f"verbalizer={hp['verbalizer']}: PTR's rules are its verbalizer; use manual"
    return None


METHOD = Method(
    name="ptr",
    family="full",
    head="lm",
    build=build,
    space=space,
    refuse=refuse,
    refuse_task=lambda task: (
        None
        if task.name in RULES
        else f"no PTR rules for task {task.name} (tasks with rules: {', '.join(RULES)})"
    ),
    summary="all weights; sub-prompts with their own masks and words, classes = conjunctions "
    "of sub-words (PTR rules, see `tunebench tasks`)",
    defaults={"lr": 1e-5},
)

"""Multi-turn conversations: whole ShareGPT conversations replayed turn by turn.

Turn k of a conversation is one request whose prompt is the chat history so far: the system message (if the
conversation has one), the recorded user and assistant messages of turns 0..k-1, and user message k, rendered with
the model's chat template (`add_generation_prompt`). The history is the *recorded* one, not what the engine wrote:
every engine then sees exactly the same prompts (same tokens, same lengths), and turn k's prompt starts with turn
k-1's prompt, which is what a prefix cache can reuse. Output lengths are the recorded assistant messages' (exact,
with ignore_eos), as in the single-turn ShareGPT workload.

With `history="generated"` a later turn carries, instead of the recorded answer, the answer the engine actually
gave to the previous turn (what a chat client sends): its prompt is the previous turn's prompt, the generated
answer, and the rendered tail after it (end of the assistant message, the next user message, the generation
prompt). Offline the splice is done in tokens (same lengths as recorded, since answers have exact lengths);
servers get the generated text in the messages (chat) or the prompt (completions). It needs a template that
renders a conversation as a prefix of its continuation (ChatML and most others do); the workload checks it.

Turn 0 arrives on the workload's schedule (the request rate counts conversations); turn k > 0 has no precomputed
arrival: it is released `think_time_s` after turn k-1 finished (benchctl.worker.admission offline, the load client
in serving mode), so many conversations are in flight while each one waits for its own answers.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from benchctl.workload.base import RequestSpec, WorkloadError, length_stats
from benchctl.workload.chat import ChatTemplate, ChatTemplateError
from benchctl.workload.reader import read_sharegpt
from benchctl.workload.sharegpt import MAX_TOTAL_TOKENS, MIN_TOKENS, file_source
from benchctl.workload.tokenizer import Tokenizer

# ShareGPT's speaker names (and those of its variants) -> chat roles
ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
MIN_TURNS = 2  # a conversation workload is about later turns: single-turn conversations are left out
HISTORIES = ("recorded", "generated")


def chat_turns(conversation: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    """(system messages, [(user, assistant), ...]): the leading strictly alternating user/assistant pairs.

    The first message that breaks the alternation (an unknown speaker, two user messages in a row, a user
    message without an answer) ends the conversation there.
    """
    system: list[dict] = []
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(conversation) and ROLES.get(conversation[i].get("from", "")) == "system":
        system.append({"role": "system", "content": conversation[i]["value"]})
        i += 1
    while i + 1 < len(conversation):
        user, answer = conversation[i], conversation[i + 1]
        if ROLES.get(user.get("from", "")) != "user" or ROLES.get(answer.get("from", "")) != "assistant":
            break
        pairs.append((user["value"], answer["value"]))
        i += 2
    return system, pairs


def sample_conversations(
    path: Path,
    tokenizer: Tokenizer,
    num_conversations: int,
    seed: int,
    max_turns: int | None = None,
    think_time_s: float = 0.0,
    fixed_output_len: int | None = None,
    history: str = "recorded",
) -> tuple[list[RequestSpec], dict]:
    """`num_conversations` conversations of >= 2 turns, shuffled with the seed; one RequestSpec per turn.

    A conversation is cut before the first turn that fails the ShareGPT filters (an answer shorter than
    MIN_TOKENS, or prompt + answer beyond MAX_TOTAL_TOKENS: prompts grow with the history) and at `max_turns`.
    """
    if num_conversations < 1:
        raise WorkloadError(f"--num-prompts (conversations) must be >= 1, got {num_conversations}")
    if max_turns is not None and max_turns < MIN_TURNS:
        raise WorkloadError(f"--max-turns must be >= {MIN_TURNS} for a conversation workload, got {max_turns}")
    if not 0 <= think_time_s < math.inf:  # NaN fails too
        raise WorkloadError(f"--think-time must be >= 0 seconds and finite, got {think_time_s}")
    if fixed_output_len is not None and fixed_output_len < 1:
        raise WorkloadError(f"--sharegpt-output-len must be >= 1, got {fixed_output_len}")
    if history not in HISTORIES:
        raise WorkloadError(f"--history must be one of {', '.join(HISTORIES)}, got {history!r}")
    template = ChatTemplate(tokenizer.model_dir)
    if not template.available:
        raise WorkloadError(f"{tokenizer.model_dir}: the model has no chat template; conversations need one")
    dataset = read_sharegpt(path)
    candidates: list[tuple[str, list[dict], list[tuple[str, str]]]] = []
    for conv in dataset.entries:
        system, pairs = chat_turns(conv["conversations"])
        if len(pairs) >= MIN_TURNS:
            candidates.append((str(conv.get("id", len(candidates))), system, pairs))
    random.Random(seed).shuffle(candidates)
    requests: list[RequestSpec] = []
    turns_taken: list[int] = []
    source_ids: dict[str, str] = {}  # conv-0000 -> the dataset's own conversation id
    cut = {"answer_too_short": 0, "too_long": 0, "max_turns": 0}
    for source_id, system, pairs in candidates:
        conv_id = f"conv-{len(turns_taken):04d}"
        turns = _conversation_requests(
            conv_id,
            source_id,
            system,
            pairs,
            template,
            tokenizer,
            max_turns,
            think_time_s,
            fixed_output_len,
            cut,
            generated=history == "generated",
        )
        if len(turns) < MIN_TURNS:
            continue
        requests += turns
        source_ids[conv_id] = source_id
        turns_taken.append(len(turns))
        if len(turns_taken) == num_conversations:
            break
    if len(turns_taken) < num_conversations:
        raise WorkloadError(
            f"{path}: only {len(turns_taken)} conversations have {MIN_TURNS}+ turns that pass the "
            f"ShareGPT filters, {num_conversations} requested (lower --num-prompts)"
        )
    source = {
        **file_source(dataset),
        "fixed_output_len": fixed_output_len,
        "conversations": len(turns_taken),
        "turns_per_conversation": length_stats(turns_taken),
        "max_turns": max_turns,
        "think_time_s": think_time_s,
        "history": history,
        "chat_template": "model",
        "filters": {"min_tokens": MIN_TOKENS, "max_total_tokens": MAX_TOTAL_TOKENS, "min_turns": MIN_TURNS},
        "turns_cut": cut,
        "source_ids": source_ids,
    }
    return requests, source


def _conversation_requests(
    conv_id: str,
    source_id: str,
    system: list[dict],
    pairs: list[tuple[str, str]],
    template: ChatTemplate,
    tokenizer: Tokenizer,
    max_turns: int | None,
    think_time_s: float,
    fixed_output_len: int | None,
    cut: dict,
    generated: bool = False,
) -> list[RequestSpec]:
    turns: list[RequestSpec] = []
    history = list(system)
    answered = ""  # the previous turn's prompt + its recorded answer, as rendered text
    for k, (user, answer) in enumerate(pairs):
        if max_turns is not None and k == max_turns:
            cut["max_turns"] += 1
            break
        messages = [*history, {"role": "user", "content": user}]
        try:
            prompt = template.render(messages)
        except ChatTemplateError as e:
            raise WorkloadError(f"conversation {source_id}: {e}") from None
        prompt_ids = tokenizer.encode(prompt)
        output_len = fixed_output_len or len(tokenizer.encode(answer))
        if fixed_output_len is None and output_len < MIN_TOKENS:
            cut["answer_too_short"] += 1
            break
        if len(prompt_ids) + output_len > MAX_TOTAL_TOKENS:
            cut["too_long"] += 1
            break
        suffix_text = suffix_ids = None
        if generated and turns:
            if not prompt.startswith(answered):
                raise WorkloadError(
                    f"conversation {source_id}: the chat template does not render a conversation as "
                    f"the start of its continuation; use --history recorded"
                )
            suffix_text = prompt[len(answered) :]
            suffix_ids = tokenizer.encode(suffix_text)
        turns.append(
            RequestSpec(
                f"{conv_id}-t{k:02d}",
                prompt_ids,
                prompt,
                output_len,
                conversation_id=conv_id,
                turn=k,
                after=turns[-1].request_id if turns else None,
                think_time_s=think_time_s if turns else 0.0,
                messages=messages,
                suffix_text=suffix_text,
                suffix_ids=suffix_ids,
            )
        )
        history = [*messages, {"role": "assistant", "content": answer}]
        answered = prompt + answer
    return turns

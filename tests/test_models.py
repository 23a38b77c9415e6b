"""The domain tokenizer and the one model loader."""

from __future__ import annotations

import random

import pytest
import torch

from dynamind_lite.models import LoraSettings, build_tokenizer, load_policy
from dynamind_lite.prompts import SYSTEM_PROMPT, build_messages
from dynamind_lite.response import ACTIONS, GRID_SYMBOLS, format_response, format_rollout

GRID = "######\n#_XP_#\n#_O√S#\n#____#\n######"


def _random_grid(rng: random.Random, rows: int, cols: int) -> str:
    return "\n".join("".join(rng.choice(GRID_SYMBOLS) for _ in range(cols)) for _ in range(rows))


def _project_strings() -> list[str]:
    rng = random.Random(0)
    rollout = format_rollout(1, ["Up", "Left"], [GRID, GRID], 9.6)
    strings = [
        SYSTEM_PROMPT,
        GRID,
        rollout,
        format_response(rollout + "\nBest: Rollout 1 with value 9.6.\nPlan: Up Left", "Up"),
        format_response("The box is above me, so I push it up.", "Up"),
        "Previous state:\n" + GRID + "\nAction: (invalid)\nCurrent state:\n" + GRID,
        "Value: -0.3\nValue: 10.0",
        "<|im_start|>user\nhi<|im_end|>\n",
        "", " ", "\n\n", "  two  spaces\tand\ttabs\r\n",
        "Unicode → “quotes” — café 日本語 🙂",
        "<0x41> looks like a byte token",
    ]
    strings += [_random_grid(rng, rng.randint(1, 9), rng.randint(1, 9)) for _ in range(30)]
    alphabet = "".join(chr(c) for c in range(32, 127)) + "\n√"
    strings += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(100)]
    return strings


def test_tokenizer_is_built_deterministically():
    assert build_tokenizer().backend_tokenizer.to_str() == build_tokenizer().backend_tokenizer.to_str()


def test_tokenizer_round_trips_every_project_string():
    tokenizer = build_tokenizer()
    for text in _project_strings():
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text, repr(text)


def test_one_token_per_grid_cell():
    tokenizer = build_tokenizer()
    rng = random.Random(1)
    for _ in range(50):
        grid = _random_grid(rng, rng.randint(1, 8), rng.randint(1, 8))
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(grid, add_special_tokens=False)["input_ids"])
        assert len(tokens) == len(grid), (grid, tokens)
        assert [tokenizer.convert_tokens_to_string([t]) for t in tokens] == list(grid)


def test_tokenizer_vocabulary_is_small_and_has_chatml_tokens():
    tokenizer = build_tokenizer()
    assert len(tokenizer) < 1000
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    for word in (*ACTIONS, " Up", "Rollout", "After", "Value", "Plan", "Best", "<think>", "</answer>"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_saved_tokenizer_reloads_identically_next_to_a_qwen2_model(tiny_checkpoint):
    from transformers import AutoTokenizer

    built, reloaded = build_tokenizer(), AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert len(built) == len(reloaded)
    for text in _project_strings():
        assert reloaded(text, add_special_tokens=False)["input_ids"] == \
            built(text, add_special_tokens=False)["input_ids"]
    messages = build_messages(GRID)
    assert reloaded.apply_chat_template(messages, add_generation_prompt=True) == \
        built.apply_chat_template(messages, add_generation_prompt=True)


def test_assistant_mask_marks_exactly_the_response():
    tokenizer = build_tokenizer()
    response = format_response("The box is above me, so I push it up.", "Up")
    messages = build_messages(GRID, [(GRID, "Left")]) + [{"role": "assistant", "content": response}]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    marked = [i for i, m in zip(ids, mask) if m]
    assert tokenizer.decode(marked) == response + "<|im_end|>"
    first = mask.index(1)
    assert all(mask[first:first + len(marked)])  # one contiguous span
    prompt = tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, return_dict=False)
    assert ids[:first] == prompt  # everything before it is the generation prompt


def test_generation_prompt_opens_the_assistant_turn():
    tokenizer = build_tokenizer()
    text = tokenizer.apply_chat_template(build_messages(GRID), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")


# --------------------------------------------------------------------------- #
# load_policy
# --------------------------------------------------------------------------- #


def test_load_policy_loads_a_local_checkpoint_like_a_hub_model(tiny_checkpoint):
    model, tokenizer = load_policy(tiny_checkpoint, device="cpu")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<|endoftext|>"
    assert not model.training and model.dtype == torch.float32
    batch = tokenizer(["#_P", "######\n#_XP_#"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # left padded
    assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


def test_load_policy_wraps_lora_adapters(tiny_checkpoint):
    model, _ = load_policy(tiny_checkpoint, lora=LoraSettings(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("q_proj.lora_A" in name for name in trainable) and not any("k_proj" in n for n in trainable)


def test_load_policy_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_policy(str(tmp_path))
    with pytest.raises(OSError, match="dynamind-lite/no-such-hub-model"):
        load_policy("dynamind-lite/no-such-hub-model")
    with pytest.raises(ValueError, match="dtype"):
        load_policy(str(tmp_path), dtype="float8")


def test_hub_name_takes_the_hub_path_and_fails_clearly_offline():
    """The full preset's model goes through the same call; offline (conftest) it
    must fail at once with the name and the reason, never start a download."""
    from dynamind_lite.config import get_preset

    name = get_preset("full").model_name_or_path
    assert name == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(OSError, match=r"Qwen/Qwen2\.5-7B-Instruct.*HF_HUB_OFFLINE"):
        load_policy(name, device="cpu")


@pytest.mark.parametrize("kwargs, message", [
    ({"r": 0}, "rank"), ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout"), ({"target_modules": ()}, "target"),
])
def test_lora_settings_validate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoraSettings(**kwargs)


# --------------------------------------------------------------------------- #
# The shipped tiny base model and its build script
# --------------------------------------------------------------------------- #


def test_shipped_tiny_base_is_a_small_qwen2_checkpoint_that_answers_in_format():
    from dynamind_lite.envs.sokoban import load_levels
    from dynamind_lite.paths import level_file, tiny_base_dir
    from dynamind_lite.response import parse_response

    path = tiny_base_dir()
    assert (path / "model.safetensors").is_file()
    assert sum(f.stat().st_size for f in path.iterdir()) < 10 * 2**20
    model, tokenizer = load_policy(str(path), device="cpu")
    assert model.config.model_type == "qwen2"
    assert 2e5 <= sum(p.numel() for p in model.parameters()) <= 1e7  # a few hundred thousand to a few million
    assert tokenizer.backend_tokenizer.to_str() == build_tokenizer().backend_tokenizer.to_str()
    grids = [level["grid"] for level in load_levels(level_file("id_val"))[:4]]
    prompts = [tokenizer.apply_chat_template(build_messages(g), add_generation_prompt=True, tokenize=False)
               for g in grids]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=40, do_sample=False)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(parse_response(t).valid for t in texts), texts


def _build_tiny_base_script():
    import importlib.util

    from dynamind_lite.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("build_tiny_base", REPO_ROOT / "scripts" / "build_tiny_base.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_build_tiny_base_is_deterministic(tmp_path):
    script = _build_tiny_base_script()
    architecture = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, tie_word_embeddings=True)
    torch.set_num_threads(1)
    built = [script.build_tiny_base(tmp_path / name, num_levels=4, epochs=1.0, batch_size=8,
                                    architecture=architecture) for name in ("a", "b")]
    assert (built[0] / "model.safetensors").read_bytes() == (built[1] / "model.safetensors").read_bytes()
    assert (built[0] / "tokenizer.json").read_bytes() == (built[1] / "tokenizer.json").read_bytes()
    rows = script.play_examples([{"grid": "######\n#_P__#\n#_X__#\n#_O__#\n######", "size": [5, 6],
                                  "num_boxes": 1}], epsilon=0.0, max_history=3, seed=0)
    assert [r["messages"][-1]["content"] for r in rows] == [
        "<think>The box is below me, so I push it down.</think><answer>Down</answer>"]


def test_build_tiny_base_sizes_the_model_from_its_command_line(tmp_path, capsys):
    import json

    script = _build_tiny_base_script()
    with pytest.raises(SystemExit):
        script.main(["--out", str(tmp_path / "bad"), "--hidden-size", "24"])  # 8 heads of width 3: odd
    assert "--hidden-size must be a multiple of 16" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    script.main(["--out", str(tmp_path / "m"), "--num-levels", "2", "--hidden-size", "16", "--layers", "1",
                 "--threads", "1"])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (16, 48, 1)

"""The OpenAI-compatible client and the LLM parts of RESIM, against real local servers.

- ``transformers serve`` on a random tiny checkpoint (started once per session):
  a random model answers garbage, which is what the rejection paths need.
- ``ScriptedChatServer``: a real HTTP server on 127.0.0.1 answering fixed texts
  (e.g. what TemplateAggregator writes for the same tree), through the real
  ``openai`` client, for deterministic success paths.
- ``SilentServer``: accepts and never answers (timeouts).
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time

import pytest

from dynamind_lite.envs.sokoban import SokobanEnv
from dynamind_lite.generation import Generation, GenerationConfig, make_generator
from dynamind_lite.generation.openai_compat import OpenAIGenerator
from dynamind_lite.evaluate import llm_sim_score
from dynamind_lite.llm import ChatClient, ChatResult, LLMError, fill_template, load_template, parse_number
from dynamind_lite.resim import AggregationRejected, LLMAggregator, TemplateAggregator, validate_resim_response
from dynamind_lite.response import format_rollout, parse_answer, parse_plan
from dynamind_lite.search import ExactValue, LLMValueFunction, RandomPolicy, build_tree
from tests.openai_server import ScriptedChatServer, SilentServer, transformers_serve

SECRET = "sk-test-4f9a1c0e7d2b8a6355e1"  # a fake key, set in the environment only


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")
def served_tiny(tiny_checkpoint, tmp_path_factory):
    """``transformers serve`` on the random tiny checkpoint, on a free loopback port.

    The copy served enables sampling in its generation config, as instruct
    checkpoints ship it (transformers serve samples only then; temperature 0
    still decodes greedily). Greedy, the random model answers blank lines;
    sampled, it answers random tokens."""
    served = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(tiny_checkpoint, served)
    config = json.loads((served / "generation_config.json").read_text())
    (served / "generation_config.json").write_text(json.dumps(config | {"do_sample": True}))
    with transformers_serve(str(served)) as server:
        print(f"\ntransformers serve ready in {server['startup_s']:.1f} s: {' '.join(server['command'])}")
        yield server


@pytest.fixture(scope="module")
def level():
    """A level, its start state and a small real search tree (b=3, d=2) from it."""
    env = SokobanEnv(max_steps=30)
    observation, _ = env.reset(seed=11)
    history = [("#####\n#P_X#", "Left")]  # any earlier (state, action) pair: shown as context only
    tree = build_tree(env, env.snapshot(), RandomPolicy(), b=3, d=2, value_fn=ExactValue(), rng=random.Random(0))
    return observation, history, tree


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("DYNAMIND_TEST_KEY", SECRET)
    return "DYNAMIND_TEST_KEY"


def scripted_client(server, **kwargs) -> ChatClient:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 10.0)
    return ChatClient(server.base_url, "scripted-model", **kwargs)


def corrupt_first_state(text: str) -> str:
    """``text`` with one cell of its first simulated grid changed (a floor made a wall)."""
    lines = text.split("\n")
    j = next(i for i, line in enumerate(lines) if line.startswith("After ")) + 1
    while "_" not in lines[j]:
        j += 1
    lines[j] = lines[j].replace("_", "#", 1)
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# ChatClient
# --------------------------------------------------------------------------- #


def test_client_rejects_bad_arguments_with_clear_errors():
    with pytest.raises(ValueError, match="base_url"):
        ChatClient("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="model"):
        ChatClient("http://127.0.0.1:1/v1", " ")
    with pytest.raises(ValueError, match="NAME of an environment variable") as info:
        ChatClient("http://127.0.0.1:1/v1", "m", api_key_env=SECRET)
    assert SECRET not in str(info.value)
    with pytest.raises(ValueError, match="timeout"):
        ChatClient("http://127.0.0.1:1/v1", "m", timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        ChatClient("http://127.0.0.1:1/v1", "m", max_retries=-1)
    client = ChatClient("http://127.0.0.1:1/v1", "m")
    with pytest.raises(ValueError, match="non-empty list"):
        client.chat("hello")
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        client.chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(ValueError, match="max_tokens"):
        client.chat([{"role": "user", "content": "hi"}], max_tokens=0)


def test_chat_sends_the_request_and_reads_the_answer():
    with ScriptedChatServer(lambda body: "<think>go</think><answer>Up</answer>") as server:
        result = scripted_client(server).chat([{"role": "user", "content": "hi"}], temperature=0.5,
                                              max_tokens=17, seed=4, top_p=0.9)
    assert result == ChatResult(text="<think>go</think><answer>Up</answer>", completion_tokens=1,
                                finish_reason="stop")
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "scripted-model"
    assert request["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert (request["body"]["temperature"], request["body"]["max_tokens"]) == (0.5, 17)
    assert (request["body"]["seed"], request["body"]["top_p"]) == (4, 0.9)


def test_reasoning_split_off_by_the_server_is_glued_back():
    text = "<think>Rollout 1: Up\nValue: 9.6\nPlan: Up</think><answer>Up</answer>"
    with ScriptedChatServer(lambda body: text, mode="reasoning_split") as server:
        result = scripted_client(server).chat([{"role": "user", "content": "hi"}])
    assert result.text == text
    assert parse_answer(result.text) == "Up"


def test_api_key_comes_from_the_environment_and_never_leaks(secret_env, tmp_path):
    with ScriptedChatServer(lambda body: "Value: 1.0") as server:
        client = scripted_client(server, api_key_env=secret_env)
        client.chat([{"role": "user", "content": "hi"}])
        assert server.requests[-1]["headers"]["authorization"] == f"Bearer {SECRET}"

        value_fn = LLMValueFunction(client)
        assert value_fn("#####\n#P_X#") == 1.0
        blob = pickle.dumps(client)
        for text in (repr(client), str(client), repr(value_fn), blob.decode("latin-1"),
                     repr(OpenAIGenerator(client))):
            assert SECRET not in text
        (tmp_path / "client.pkl").write_bytes(blob)
        assert SECRET.encode() not in (tmp_path / "client.pkl").read_bytes()

        # The unpickled client reads the key from the environment again.
        restored = pickle.loads(blob)
        assert repr(restored) == repr(client)
        restored.chat([{"role": "user", "content": "hi"}])
        assert server.requests[-1]["headers"]["authorization"] == f"Bearer {SECRET}"

        server.mode = "http_500"
        with pytest.raises(LLMError) as info:
            client.chat([{"role": "user", "content": "hi"}])
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_missing_api_key_sends_the_placeholder(monkeypatch):
    monkeypatch.delenv("DYNAMIND_TEST_KEY", raising=False)
    with ScriptedChatServer(lambda body: "ok") as server:
        scripted_client(server, api_key_env="DYNAMIND_TEST_KEY").chat([{"role": "user", "content": "hi"}])
    assert server.requests[0]["headers"]["authorization"] == "Bearer EMPTY"


def test_server_that_never_answers_raises_a_timeout_quickly():
    with SilentServer() as server:
        client = ChatClient(server.base_url, "m", timeout=1.0, max_retries=0)
        start = time.perf_counter()
        with pytest.raises(LLMError, match="timed out") as info:
            client.chat([{"role": "user", "content": "hi"}])
        elapsed = time.perf_counter() - start
    assert server.base_url in str(info.value)
    assert 0.9 < elapsed < 5.0
    assert server.connections == 1


def test_timeouts_are_retried_max_retries_times():
    with SilentServer() as server:
        with pytest.raises(LLMError, match=r"timed out.*1 retries"):
            ChatClient(server.base_url, "m", timeout=0.5, max_retries=1).chat([{"role": "user", "content": "x"}])
        time.sleep(0.2)  # let the accept loop count the last connection
    assert server.connections == 2


def test_refused_connection_raises_llm_error():
    with SilentServer() as server:
        url = server.base_url  # the port is free again once the server is closed
    with pytest.raises(LLMError, match="connection failed") as info:
        ChatClient(url, "m", timeout=2.0, max_retries=0).chat([{"role": "user", "content": "hi"}])
    assert url in str(info.value)


@pytest.mark.parametrize(("mode", "message"), [
    ("garbage", "malformed answer"),
    ("no_choices", "without any choice"),
    ("http_500", "HTTP error 500: the model crashed"),
])
def test_malformed_answers_raise_llm_error(mode, message):
    with ScriptedChatServer(lambda body: "unused", mode=mode) as server:
        with pytest.raises(LLMError, match=message) as info:
            scripted_client(server).chat([{"role": "user", "content": "hi"}])
    assert server.base_url in str(info.value)


def test_empty_answer_is_an_error_unless_allowed():
    with ScriptedChatServer(lambda body: "  \n") as server:
        client = scripted_client(server)
        with pytest.raises(LLMError, match="empty answer"):
            client.chat([{"role": "user", "content": "hi"}])
        assert client.chat([{"role": "user", "content": "hi"}], allow_empty=True).text == "  \n"


# --------------------------------------------------------------------------- #
# Templates and number parsing
# --------------------------------------------------------------------------- #


def test_templates_fill_and_mismatches_are_named():
    for name in ("resim_aggregate", "value_estimate", "sim_judge"):
        assert load_template(name).strip()
    with pytest.raises(ValueError, match="no prompt template named 'nope'"):
        load_template("nope")
    assert fill_template("a {x} b", x="1") == "a 1 b"
    with pytest.raises(ValueError, match=r"missing values for \['y'\].*no placeholder for \['z'\]"):
        fill_template("{x} {y}", x="1", z="2")


@pytest.mark.parametrize(("text", "expected"), [
    ("Value: 8.8", 8.8),
    ("value = -1", -1.0),
    ("**Value:** 9.9", 9.9),
    ("7.5", 7.5),
    (" 7.5.\n", 7.5),
    ("The state is worth 7.5 points.", None),
    ("closer r?You rat Right uall 0 inso", None),
    ("<think>maybe 3 or 4</think><answer>4.2</answer>", 4.2),
    ("<think>with 12 moves: 10 - 1.2</think>\nValue: 8.8", 8.8),
    ("I think 3 or 4", None),
    ("Value: 8.8\nValue: 9.0", 9.0),
    ("Value: 8.8x", None),
    ("no idea", None),
    ("", None),
    ("Value: nan", None),
])
def test_parse_number(text, expected):
    assert parse_number(text, "Value") == expected


# --------------------------------------------------------------------------- #
# LLMAggregator (deterministic: a real HTTP server answering fixed texts)
# --------------------------------------------------------------------------- #


def test_aggregator_accepts_a_correct_answer_and_prompts_with_the_real_tree(level):
    observation, history, tree = level
    reference = TemplateAggregator().aggregate(observation, history, tree)
    with ScriptedChatServer(lambda body: reference) as server:
        aggregator = LLMAggregator(scripted_client(server), max_attempts=3)
        text = aggregator.aggregate(observation, history, tree)
    assert text == reference
    validate_resim_response(text, tree)
    assert aggregator.stats() == {"calls": 1, "accepted": 1, "failed": 0, "attempts": 1, "rejections": 0,
                                  "server_errors": 0, "completion_tokens": len(reference.split())}
    # The prompt holds the current state, the history and every rollout block verbatim.
    prompt = server.requests[0]["body"]["messages"][0]["content"]
    assert observation in prompt and history[0][0] in prompt
    for i, rollout in enumerate(tree.rollouts(), 1):
        assert format_rollout(i, rollout.actions, rollout.states, rollout.value) in prompt
    assert "Best: Rollout K." in prompt and "Plan:" in prompt


def test_aggregator_rejects_wrong_states_and_raises_after_max_attempts(level):
    observation, history, tree = level
    wrong = corrupt_first_state(TemplateAggregator().aggregate(observation, history, tree))
    assert parse_answer(wrong) is not None and parse_plan(wrong) is not None  # well-formed, only a state is wrong
    with pytest.raises(AggregationRejected):
        validate_resim_response(wrong, tree)
    with ScriptedChatServer(lambda body: wrong) as server:
        aggregator = LLMAggregator(scripted_client(server), max_attempts=2)
        with pytest.raises(AggregationRejected, match="in 2 attempts") as info:
            aggregator.aggregate(observation, history, tree)
    assert "attempt 1:" in str(info.value) and "attempt 2:" in str(info.value)
    assert aggregator.stats()["attempts"] == 2 and aggregator.stats()["rejections"] == 2
    assert aggregator.stats()["failed"] == 1 and aggregator.stats()["accepted"] == 0
    # The retry shows the model its rejected answer and why.
    retry = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[1]["content"] == wrong and "rejected" in retry[2]["content"]


def test_aggregator_retries_until_an_answer_passes(level):
    observation, history, tree = level
    right = TemplateAggregator().aggregate(observation, history, tree)
    answers = iter([corrupt_first_state(right), "<think>no idea</think><answer>Jump</answer>", right])
    with ScriptedChatServer(lambda body: next(answers)) as server:
        aggregator = LLMAggregator(scripted_client(server), max_attempts=3)
        assert aggregator.aggregate(observation, history, tree) == right
    assert aggregator.stats()["attempts"] == 3 and aggregator.stats()["rejections"] == 2
    assert aggregator.stats()["accepted"] == 1


def test_aggregator_counts_server_failures_as_rejections(level):
    observation, history, tree = level
    with ScriptedChatServer(mode="garbage") as server:
        aggregator = LLMAggregator(scripted_client(server), max_attempts=2)
        with pytest.raises(AggregationRejected, match="server error"):
            aggregator.aggregate(observation, history, tree)
    assert aggregator.stats()["server_errors"] == 2 and aggregator.stats()["rejections"] == 2


def test_aggregator_validates_its_settings(level):
    with pytest.raises(ValueError, match="max_attempts"):
        LLMAggregator(ChatClient("http://127.0.0.1:1/v1", "m"), max_attempts=0)
    with pytest.raises(ValueError, match="placeholders do not match"):
        LLMAggregator(ChatClient("http://127.0.0.1:1/v1", "m"), template="{task} only").build_prompt(*level)


# --------------------------------------------------------------------------- #
# LLMValueFunction and llm_sim_score
# --------------------------------------------------------------------------- #


def test_value_function_reads_the_number_and_rejects_bad_answers(level):
    observation = level[0]
    answers = iter(["Value: 8.8", "<think>12 moves</think><answer>8.8</answer>", "Value: 55", "3 or 4?"])
    with ScriptedChatServer(lambda body: next(answers)) as server:
        value_fn = LLMValueFunction(scripted_client(server))
        assert value_fn(observation) == 8.8
        assert value_fn(observation) == 8.8
        with pytest.raises(LLMError, match="outside the accepted range"):
            value_fn(observation)
        with pytest.raises(LLMError, match="no unambiguous number"):
            value_fn(observation)
    assert observation in server.requests[0]["body"]["messages"][0]["content"]


def test_llm_sim_score_reads_the_judges_score():
    answers = iter(["Score: 0.75", "Score: 1.5"])
    with ScriptedChatServer(lambda body: next(answers)) as server:
        client = scripted_client(server)
        assert llm_sim_score(client, "#P_#", "#_P#") == 0.75
        with pytest.raises(LLMError, match=r"no score in \[0, 1\]"):
            llm_sim_score(client, "#P_#", "#_P#")
        with pytest.raises(ValueError, match="real"):
            llm_sim_score(client, "#P_#", "")
    prompt = server.requests[0]["body"]["messages"][0]["content"]
    assert "#P_#" in prompt and "#_P#" in prompt


# --------------------------------------------------------------------------- #
# OpenAIGenerator
# --------------------------------------------------------------------------- #


def test_generator_keeps_order_and_maps_the_config():
    def echo(body):
        return f"<think>{body['messages'][-1]['content']}</think><answer>Up</answer>"

    conversations = [[{"role": "user", "content": f"state {i}"}] for i in range(7)]
    with ScriptedChatServer(echo) as server:
        generator = make_generator("openai", client=scripted_client(server), max_workers=3)
        greedy = generator.generate(conversations, GenerationConfig(max_new_tokens=33, seed=5))
        sampled = generator.generate(conversations[:2], GenerationConfig(temperature=0.8, top_p=0.9,
                                                                         do_sample=True, seed=None))
    assert isinstance(generator, OpenAIGenerator)
    assert [g.text for g in greedy] == [echo({"messages": c}) for c in conversations]
    assert all(isinstance(g, Generation) and g.finish_reason == "stop" for g in greedy + sampled)
    assert [g.num_tokens for g in greedy] == [len(g.text.split()) for g in greedy]  # the server's usage count
    assert len(sampled) == 2
    bodies = sorted((r["body"] for r in server.requests[:7]), key=lambda b: b["messages"][0]["content"])
    assert [b["seed"] for b in bodies] == [5 + i for i in range(7)]
    assert all(b["temperature"] == 0.0 and b["max_tokens"] == 33 and "top_p" not in b for b in bodies)
    assert all(b["temperature"] == 0.8 and b["top_p"] == 0.9 and "seed" not in b for b in
               (r["body"] for r in server.requests[7:]))
    assert generator.generate([], GenerationConfig()) == []


# --------------------------------------------------------------------------- #
# A real transformers serve on a random tiny model: garbage in every answer
# --------------------------------------------------------------------------- #


def test_generator_on_transformers_serve_returns_text_and_token_counts(served_tiny):
    client = ChatClient(served_tiny["base_url"], served_tiny["model"], timeout=30.0, max_retries=0)
    conversations = [[{"role": "user", "content": f"Current state:\n#####\n#P_X{'_' * i}#"}] for i in range(3)]
    sampling = GenerationConfig(max_new_tokens=12, temperature=1.0, do_sample=True, seed=0)
    generations = OpenAIGenerator(client, max_workers=2).generate(conversations, sampling)
    assert len(generations) == 3
    for generation in generations:
        assert isinstance(generation, Generation) and generation.text.strip()  # random tokens
        assert generation.num_tokens == 12 and generation.finish_reason == "length"
        assert parse_answer(generation.text) is None  # garbage is an invalid action, not a crash
    # One request at a time, the same seed gives the same sample; greedy gives the blank answer.
    first = OpenAIGenerator(client, max_workers=1).generate(conversations[:1], sampling)
    assert OpenAIGenerator(client, max_workers=1).generate(conversations[:1], sampling) == first
    greedy = OpenAIGenerator(client).generate(conversations[:1], GenerationConfig(max_new_tokens=5))
    assert greedy == [Generation(text="", num_tokens=5, finish_reason="length")]


def test_aggregator_on_a_random_model_is_rejected_and_counted(served_tiny, level):
    observation, history, tree = level
    client = ChatClient(served_tiny["base_url"], served_tiny["model"], timeout=30.0, max_retries=0)
    aggregator = LLMAggregator(client, max_attempts=2, max_tokens=32, temperature=1.0, seed=0)
    with pytest.raises(AggregationRejected, match=r"in 2 attempts: attempt 1: format.*attempt 2: format"):
        aggregator.aggregate(observation, history, tree)
    assert aggregator.stats() == {"calls": 1, "accepted": 0, "failed": 1, "attempts": 2, "rejections": 2,
                                  "server_errors": 0, "completion_tokens": 64}
    # Greedy, the random model answers blank text: a counted server-side failure, still rejected.
    greedy = LLMAggregator(client, max_attempts=1, max_tokens=8)
    with pytest.raises(AggregationRejected, match="empty answer"):
        greedy.aggregate(observation, history, tree)
    assert greedy.stats()["server_errors"] == 1 and greedy.stats()["failed"] == 1


def test_value_function_and_judge_on_a_random_model_raise_llm_error(served_tiny, level):
    client = ChatClient(served_tiny["base_url"], served_tiny["model"], timeout=30.0, max_retries=0)
    with pytest.raises(LLMError, match="empty answer"):
        LLMValueFunction(client, max_tokens=16)(level[0])
    with pytest.raises(LLMError, match="empty answer"):
        llm_sim_score(client, level[0], level[0], max_tokens=16)


def test_transformers_serve_rejects_an_unknown_model_name(served_tiny):
    client = ChatClient(served_tiny["base_url"], "not-the-served-model", timeout=30.0, max_retries=0)
    with pytest.raises(LLMError, match="HTTP error 400"):
        client.chat([{"role": "user", "content": "hi"}])

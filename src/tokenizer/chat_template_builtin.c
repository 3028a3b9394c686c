/*
 * Built-in chat templates: the published `chat_template` of each model
 * family's tokenizer_config.json on the Hugging Face Hub, copied verbatim
 * (repository named above each), for models whose files carry no template.
 * The same texts are test fixtures in tests/tokenizer/data/chat/, where the
 * unit tests render them against Python's jinja2.
 */
#include <stddef.h>
#include <strings.h>

#include "llmops/chat_template.h"

/* llama2: tokenizer_config.json "chat_template" of meta-llama/Llama-2-7b-chat-hf */
static const char tmpl_llama2[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set syste"
    "m_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set sy"
    "stem_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role']"
    " == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must altern"
    "ate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_mes"
    "sage != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + mes"
    "sage['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message"
    "['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif mes"
    "sage['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";

/* llama3: tokenizer_config.json "chat_template" of meta-llama/Meta-Llama-3-8B-Instruct */
static const char tmpl_llama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|st"
    "art_header_id|>' + message['role'] + '<|end_header_id|>\n"
    "\n"
    "'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bo"
    "s_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '"
    "<|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "' }}{% endif %}";

/* mistral: tokenizer_config.json "chat_template" of mistralai/Mistral-7B-Instruct-v0.2 */
static const char tmpl_mistral[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.ind"
    "ex0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/"
    "assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['con"
    "tent'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos"
    "_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% "
    "endif %}{% endfor %}";

/* chatml: tokenizer_config.json "chat_template" of Qwen/Qwen2-7B-Instruct */
static const char tmpl_chatml[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|"
    "im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n"
    "' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n"
    "' + message['content'] + '<|im_end|>' + '\n"
    "'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n"
    "' }}{% endif %}";

/* phi3: tokenizer_config.json "chat_template" of microsoft/Phi-3-mini-4k-instruct */
static const char tmpl_phi3[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'user' %}{{'<|user|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n"
    "' }}{% else %}{{ eos_token }}{% endif %}";

/* zephyr: tokenizer_config.json "chat_template" of HuggingFaceH4/zephyr-7b-beta */
static const char tmpl_zephyr[] =
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n"
    "' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n"
    "' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n"
    "'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}";

/* gemma: tokenizer_config.json "chat_template" of google/gemma-2-2b-it */
static const char tmpl_gemma[] =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not"
    " supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') !"
    "= (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assi"
    "stant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set ro"
    "le = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' +"
    " role + '\n"
    "' + message['content'] | trim + '<end_of_turn>\n"
    "' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n"
    "'}}{% endif %}";

typedef struct {
    const char *name;
    const char *text;
} builtin_template;

static const builtin_template g_builtins[] = {
    {"llama2", tmpl_llama2}, {"llama3", tmpl_llama3}, {"mistral", tmpl_mistral},
    {"chatml", tmpl_chatml}, {"phi3", tmpl_phi3},     {"zephyr", tmpl_zephyr},
    {"gemma", tmpl_gemma},
};

static const char *const g_builtin_names[] = {"llama2", "llama3", "mistral", "chatml",
                                              "phi3",   "zephyr", "gemma",   NULL};

const char *llmops_chat_template_builtin(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof g_builtins / sizeof g_builtins[0]; i++)
        if (strcasecmp(name, g_builtins[i].name) == 0) return g_builtins[i].text;
    return NULL;
}

const char *const *llmops_chat_template_builtin_names(void) { return g_builtin_names; }

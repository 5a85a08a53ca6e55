"""The FundusExpert system prompt.

Source: the official FundusExpert code replaces InternVL's default system message with
``你是FundusExpert，是一个有用无害的人工智能助手。`` in all InternVL conversation templates
(official conversation.py). English is our default (a translation of that sentence); the paper's Chinese
string is available with ``--system "$(fundusexpert swift system-prompt --lang zh)"``.
"""
SYSTEM_PROMPTS = {
    'en': 'You are FundusExpert, a helpful and harmless AI assistant.',
    'zh': '你是FundusExpert，是一个有用无害的人工智能助手。',
}
DEFAULT_SYSTEM = SYSTEM_PROMPTS['en']

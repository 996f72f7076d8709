"""The interpreter's own questions (a missing variable, a confirmation) in the customer's language."""

from __future__ import annotations

DEFAULT_LANGUAGE = "en"

_ASK_VARIABLE = {
    "en": "Could you tell me the {name}?",
    "es": "¿Me podrías indicar {name}?",
    "ar": "هل يمكنك إخباري بـ {name}؟",
    "fr": "Pourriez-vous m'indiquer {name} ?",
    "pt": "Você poderia me informar {name}?",
}
_CONFIRM = {
    "en": "Do you want me to go ahead with {action!r}? Please reply yes or no.",
    "es": "¿Quieres que siga adelante con «{action}»? Responde sí o no, por favor.",
    "ar": "هل تريد أن أتابع «{action}»؟ يرجى الرد بنعم أو لا.",
    "fr": "Voulez-vous que je lance « {action} » ? Répondez oui ou non, s'il vous plaît.",
    "pt": "Quer que eu continue com “{action}”? Responda sim ou não, por favor.",
}


def ask_variable(name: str, language: str) -> str:
    """The default question for a variable without a prompt of its own."""
    return _ASK_VARIABLE.get(language, _ASK_VARIABLE[DEFAULT_LANGUAGE]).format(name=name.replace("_", " "))


def confirm_action(action: str, language: str) -> str:
    """The default confirmation question for an action without a confirmation message of its own."""
    return _CONFIRM.get(language, _CONFIRM[DEFAULT_LANGUAGE]).format(action=action)

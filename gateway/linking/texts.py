"""What linking tells customers, in one place a deployment can reword.

Nothing here may say anything about another profile: the same words go out
whether a claimed phone or address belongs to someone or to no one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Texts"]


@dataclass(frozen=True, slots=True)
class Texts:
    """What the customer is told; none of it says anything about another profile."""

    linked: str = "Готово — продолжаем наш разговор здесь. Вся переписка сохранена."
    stale_link: str = (
        "Эта ссылка уже не действует. Ничего страшного — просто напишите свой вопрос здесь."
    )
    code_sent_sms: str = (
        "Если этот номер ваш, на него пришло SMS с кодом из 6 цифр. Пришлите код сюда — "
        "и мы продолжим разговор с учётом вашей прежней переписки. Код действует 10 минут."
    )
    code_sent_email: str = (
        "Если этот адрес ваш, на него пришло письмо с кодом из 6 цифр. Пришлите код сюда — "
        "и мы продолжим разговор с учётом вашей прежней переписки. Код действует 10 минут."
    )
    code_limit: str = "Коды уже отправлены. Попробуйте позже или дождитесь менеджера."
    code_message: str = "Код подтверждения: {code}. Никому его не сообщайте."
    code_subject: str = "Код подтверждения"
    code_wrong: str = "Код не подошёл. Осталось попыток: {left}."
    code_dead: str = (
        "Код больше не действует: слишком много попыток. "
        "Чтобы получить новый, снова напишите свой номер или адрес."
    )
    code_expired: str = (
        "Срок действия кода истёк. Чтобы получить новый, снова напишите свой номер или адрес."
    )

"""The text line's decisions, pure: every keyword, synonym, number and urgent phrase, in both languages,
with the case, punctuation, emoji, sentences and typos people really send."""

from __future__ import annotations

import pytest

from ivr import call_dialog
from ivr import text_dialog as tl
from ivr.matching import normalize, typos_allowed
from tests.conftest import loaded_content
from tests.helpers.checks import failures, report

CONTENT = loaded_content()
LANGS = tuple(CONTENT.languages)
SENTENCE = {"en": "info on {} please", "es": "quiero saber de {} por favor"}


def decide(text: str, lang: str = "en", **conversation: object) -> tl.Decision:
    return tl.decide(CONTENT, tl.Conversation(lang=lang, **conversation), text)  # type: ignore[arg-type]


def with_typo(phrase: str) -> str | None:
    """The phrase with one letter of its longest word changed, when that word is long enough to forgive it."""
    words = phrase.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = normalize(words[longest])
    if typos_allowed(word) < 1:
        return None
    middle = len(word) // 2
    words[longest] = word[:middle] + ("x" if word[middle] != "x" else "z") + word[middle + 1 :]
    return " ".join(words)


def section_cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for lang, language in CONTENT.languages.items():
        for section in language.sections.values():
            phrases = {section.keyword, section.title, language.texting.topics[section.id], *section.synonyms}
            for phrase in sorted(phrases):
                variants = {
                    "as written": phrase,
                    "capitals": phrase.upper(),
                    "small letters": phrase.lower(),
                    "spaces and punctuation": f"  {phrase.title()}?!  ",
                    "emoji": f"{phrase} 🙏💙",
                    "in a sentence": SENTENCE[lang].format(phrase),
                }
                typo = with_typo(phrase)
                if typo:
                    variants["typo"] = typo
                cases += [(lang, section.id, text, how) for how, text in variants.items()]
    return cases


SECTION_CASES = section_cases()


def topic_word_finds_its_section(lang: str, section_id: str, text: str, how: str) -> None:
    decision = decide(text, lang)
    # A misspelled title that holds a question ("treaxment and clinical trials") is heard as the question
    # (its words are exact, the title's are not): the same section, at the message that answers it.
    part = answer_part(lang, section_id, text) if how == "typo" else 0
    assert decision.outcome == tl.Outcome(tl.SECTION, lang, section_id, part), (text, how)
    assert tl.SaveConversation(lang, section_id, part + 1) in decision.effects
    assert tl.CountSectionText(section_id) in decision.effects


@pytest.mark.parametrize("lang", LANGS)
def test_every_topic_word_finds_its_section(lang: str) -> None:
    """Every section's keyword, title, topic word and synonym in `lang`, written every way people write."""
    found = failures([case for case in SECTION_CASES if case[0] == lang], topic_word_finds_its_section)
    assert not found, report(found)


def answer_part(lang: str, section_id: str, text: str) -> int:
    """The text message of the longest question of `section_id` whose words are all in `text`, else 0."""
    words = f" {' '.join(normalize(text).split())} "
    found = [
        (len(question), answer.sms)
        for answer in CONTENT.language(lang).sections[section_id].answers
        for question in answer.questions
        if f" {normalize(question)} " in words
    ]
    return max(found)[1] if found else 0


@pytest.mark.parametrize(
    ("text", "section_id"),
    [
        # The issue's own examples.
        ("info on hospice please", "hospice"),
        ("end of life", "hospice"),
        ("living will", "directives"),
        ("comfort care", "palliative"),
        ("come back", "recurrence"),
        ("hospise", "hospice"),
        ("paliative", "palliative"),
        ("HOSPICE!!!", "hospice"),
        ("what does a hospice nurse do?", "hospice"),  # a role word next to a topic is about the topic
        ("I'm scared", "coping"),
    ],
)
def test_issue_examples(text: str, section_id: str) -> None:
    assert decide(text).outcome == tl.Outcome(tl.SECTION, "en", section_id, 0)


@pytest.mark.parametrize(
    ("lang", "text", "section_id", "voice", "sms"),
    [
        # Issue 14: questions people ask go straight to the part that answers them, by voice and by text.
        ("en", "should I stop treatment?", "treatment", 4, 4),
        ("en", "What is a clinical trial", "treatment", 2, 2),
        ("en", "trials", "treatment", 2, 2),
        ("en", "how do I talk to my family", "coping", 2, 2),
        ("en", "my cancer has spread", "recurrence", 2, 2),
        ("en", "it is metastatic", "recurrence", 2, 2),
        ("en", "how much will it cost", "treatment", 1, 1),
        ("en", "what is hospice", "hospice", 0, 0),
        ("en", "is it my fault", "recurrence", 0, 0),
        ("es", "¿debo dejar el tratamiento?", "treatment", 4, 4),
        ("es", "qué es un ensayo clínico", "treatment", 2, 2),
        ("es", "cómo hablo con mi familia", "coping", 2, 2),
        ("es", "mi cáncer se extendió", "recurrence", 2, 3),
        ("es", "cuanto cuesta", "treatment", 1, 1),
        ("es", "cuidados al final de la vida", "hospice", 0, 0),
    ],
)
def test_questions_go_straight_to_their_answer_by_text_and_by_voice(
    lang: str, text: str, section_id: str, voice: int, sms: int
) -> None:
    decision = decide(text, lang)
    assert decision.outcome == tl.Outcome(tl.SECTION, lang, section_id, sms)
    assert tl.CountSectionText(section_id) in decision.effects
    assert tl.SaveConversation(lang, section_id, sms + 1) in decision.effects  # MORE goes on from there
    reply = call_dialog.step(CONTENT, call_dialog.CallState(lang=lang), call_dialog.Heard(speech=text))
    state = reply.next.state  # type: ignore[union-attr]
    assert (state.node, state.section, state.part) == ("section", section_id, voice)
    spoken = [line.text for line in reply.lines]
    language = CONTENT.language(lang)
    assert spoken[0] == language.sections[section_id].voice[voice]
    assert language.say("section_text") in spoken and language.say("section_choices") in spoken  # its usual choices
    assert call_dialog.CountSectionPlay(section_id) in reply.effects


def test_every_question_in_the_content_reaches_its_part_in_both_channels() -> None:
    for lang, language in CONTENT.languages.items():
        for section in language.sections.values():
            for answer in section.answers:
                for question in answer.questions:
                    outcome = decide(question, lang).outcome
                    assert (outcome.section, outcome.part) == (section.id, answer.sms), (lang, question)
                    heard = call_dialog.Heard(speech=question)
                    state = call_dialog.step(CONTENT, call_dialog.CallState(lang=lang), heard).next.state  # type: ignore[union-attr]
                    assert (state.section, state.part) == (section.id, answer.voice), (lang, question)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("template", ["{}", " {} ", "{}.", "#{}", "{}\ufe0f\u20e3", "{})"])
@pytest.mark.parametrize("key", sorted(CONTENT.topic_keys))
def test_menu_numbers(lang: str, template: str, key: str) -> None:
    decision = decide(template.format(key), lang)
    assert decision.outcome == tl.Outcome(tl.SECTION, lang, CONTENT.topic_keys[key], 0)


def family_cases(family: str) -> list[tuple[str, str]]:
    languages = CONTENT.languages.items()
    return [(lang, word) for lang, language in languages for word in sorted(language.texting.keywords[family])]


@pytest.mark.parametrize("session", LANGS)
@pytest.mark.parametrize(("lang", "word"), family_cases("stop"))
def test_stop_words_opt_out_from_any_language(session: str, lang: str, word: str) -> None:
    for text in (word, word.upper(), f"  {word.capitalize()}  ", f"{word}!"):
        decision = decide(text, session)
        assert decision.effects == (tl.OptOut(),), text
        carrier = text.strip().casefold() in tl.CARRIER_OPT_OUT_WORDS
        # Twilio confirms its own opt-out words; every other way of saying STOP gets our one confirmation.
        assert decision.outcome.kind == (tl.SILENT if carrier else tl.STOPPED), text
        assert tl.render(CONTENT, decision.outcome, tl.TextFacts()) == (
            () if carrier else (CONTENT.language(decision.outcome.lang).text("stopped"),)
        )


@pytest.mark.parametrize("word", ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"])
def test_twilio_opt_out_words_are_all_known(word: str) -> None:
    assert decide(word).outcome.kind == tl.SILENT
    assert decide(word, "es").effects == (tl.OptOut(),)


@pytest.mark.parametrize("text", ["stop sending hospice info", "please don't stop", "end of life", "cancel my visit"])
def test_stop_words_inside_a_sentence_do_not_opt_out(text: str) -> None:
    assert tl.OptOut() not in decide(text).effects


@pytest.mark.parametrize("opted_out", [False, True])
@pytest.mark.parametrize("session", LANGS)
@pytest.mark.parametrize(("lang", "word"), family_cases("start"))
def test_start_words_opt_in_with_welcome_and_menu(opted_out: bool, session: str, lang: str, word: str) -> None:
    decision = decide(word.upper(), session, opted_out=opted_out)
    assert decision.outcome.kind == tl.WELCOME
    assert tl.OptIn() in decision.effects
    welcome, menu = tl.render(CONTENT, decision.outcome, tl.TextFacts())
    language = CONTENT.language(decision.outcome.lang)
    assert welcome == language.text("welcome")
    assert menu == tl.menu(CONTENT, decision.outcome.lang)


@pytest.mark.parametrize("opted_out", [False, True])
@pytest.mark.parametrize(("lang", "word"), family_cases("help"))
def test_help_words_answer_even_after_stop(opted_out: bool, lang: str, word: str) -> None:
    for text in (word, word.upper(), f"{word}?"):
        decision = decide(text, lang, opted_out=opted_out)
        assert decision.outcome == tl.Outcome(tl.HELP, lang), text
        assert tl.OptOut() not in decision.effects and tl.OptIn() not in decision.effects


def test_help_in_the_language_it_was_asked_in() -> None:
    assert decide("AYUDA", "en").outcome == tl.Outcome(tl.HELP, "es")
    assert decide("HELP", "es").outcome == tl.Outcome(tl.HELP, "en")
    assert decide("INFO", "es").outcome == tl.Outcome(tl.HELP, "es")  # a word of both: the reader's language
    assert decide("I need help", "en").outcome == tl.Outcome(tl.HELP, "en")


@pytest.mark.parametrize(("lang", "word"), family_cases("menu"))
def test_menu_words(lang: str, word: str) -> None:
    for text in (word, word.upper(), f"{word}!! 😊"):
        assert decide(text, lang).outcome == tl.Outcome(tl.MENU, lang), text


@pytest.mark.parametrize("text", ["", "   ", "🙏", "?!", "\u200b"])
def test_an_empty_text_gets_the_menu(text: str) -> None:
    assert decide(text).outcome == tl.Outcome(tl.MENU, "en")


@pytest.mark.parametrize("text", ["blah", "asdf qwer", "Doing well thanks", "is it ok to eat", "x" * 5000])
def test_anything_else_gets_the_menu_with_a_kind_word(text: str) -> None:
    decision = decide(text)
    assert decision.outcome == tl.Outcome(tl.NOT_UNDERSTOOD, "en")
    (message,) = tl.render(CONTENT, decision.outcome, tl.TextFacts())
    assert message.startswith(CONTENT.language("en").text("not_understood"))
    assert "5 HOSPICE: end-of-life care" in message


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "ok"),
        ("en", "Thanks!"),
        ("en", "ok thank you so much 🙏"),
        ("en", "THX"),
        ("es", "gracias"),
        ("es", "Muchas gracias!"),
        ("en", "gracias"),
        ("es", "ok"),
        ("es", "está bien, gracias"),
    ],
)
def test_ok_and_thanks_get_a_short_kind_answer(lang: str, text: str) -> None:
    """Issue 14: "ok", "thanks", "gracias" get a kind word in their own language, not "did not understand"."""
    for conversation_lang in LANGS:
        decision = tl.decide(CONTENT, tl.Conversation(conversation_lang), text)
        expected = "es" if "gracias" in text.lower() else conversation_lang if text.lower() == "ok" else lang
        assert decision.outcome == tl.Outcome(tl.THANKS, expected), (conversation_lang, text)
        assert decision.effects == ()
        (message,) = tl.render(CONTENT, decision.outcome, tl.TextFacts())
        assert message == CONTENT.language(expected).text("thanks")
        assert "MENU" in message or "MENÚ" in message
    stopped = tl.decide(CONTENT, tl.Conversation("en", opted_out=True), text)
    assert stopped.outcome.kind == tl.SILENT


def test_thanks_with_a_topic_or_a_question_is_the_topic() -> None:
    assert decide("thanks, what is a clinical trial?").outcome == tl.Outcome(tl.SECTION, "en", "treatment", 2)
    assert decide("ok hospice").outcome.section == "hospice"


@pytest.mark.parametrize("family", ["call", "staff"])
def test_call_and_staff_words_ask_for_a_call_back(family: str) -> None:
    for lang, word in family_cases(family):
        for text in (word, word.upper(), f"{word} please!"):
            decision = decide(text, lang)
            assert decision.outcome == tl.Outcome(tl.CALLBACK, lang), text
            assert decision.effects[0] == tl.RequestCallback("", lang, urgent=False)


def test_a_call_back_names_the_topic_in_the_text_or_the_one_being_read() -> None:
    assert decide("call me about hospice").effects[0] == tl.RequestCallback("hospice", "en")
    assert decide("CALL", section="treatment", next_part=1).effects[0] == tl.RequestCallback("treatment", "en")
    assert decide("talk to someone").outcome.kind == tl.CALLBACK
    assert decide("llamenme por favor", "es").effects[0] == tl.RequestCallback("", "es")


def test_more_pages_through_a_section_then_says_that_is_all() -> None:
    messages = CONTENT.language("en").sections["treatment"].sms
    decision = decide("treatment")
    seen = [decision.outcome.part]
    next_part = 1
    while next_part < len(messages):
        decision = decide("MORE", section="treatment", next_part=next_part)
        assert decision.outcome == tl.Outcome(tl.SECTION, "en", "treatment", next_part)
        assert decision.effects == (tl.SaveConversation("en", "treatment", next_part + 1),)
        seen.append(decision.outcome.part)
        next_part += 1
    assert seen == list(range(len(messages)))
    last = decide("more please", section="treatment", next_part=len(messages))
    assert last.outcome == tl.Outcome(tl.NO_MORE, "en", "treatment")
    (text,) = tl.render(CONTENT, last.outcome, tl.TextFacts())
    assert "treatment and trials" in text and "MENU" in text


@pytest.mark.parametrize(("lang", "word"), family_cases("more"))
def test_more_words(lang: str, word: str) -> None:
    decision = decide(word, lang, section="hospice", next_part=1)
    assert decision.outcome == tl.Outcome(tl.SECTION, lang, "hospice", 1)


def test_more_without_a_section_gets_the_menu() -> None:
    assert decide("MORE").outcome == tl.Outcome(tl.MENU, "en")


def test_section_messages_end_with_reply_more_until_the_last() -> None:
    for lang, language in CONTENT.languages.items():
        for section in language.sections.values():
            for part, body in enumerate(section.sms):
                (message,) = tl.render(CONTENT, tl.Outcome(tl.SECTION, lang, section.id, part), tl.TextFacts())
                last = part + 1 == len(section.sms)
                assert message == f"{body}\n{language.text('end_footer' if last else 'more_footer')}"


@pytest.mark.parametrize("session", LANGS)
@pytest.mark.parametrize(("lang", "word"), family_cases("language"))
def test_language_words_switch_the_conversation(session: str, lang: str, word: str) -> None:
    decision = decide(word.upper(), session, section="hospice", next_part=2)
    assert decision.outcome == tl.Outcome(tl.LANGUAGE, lang)
    if session != lang:
        assert decision.effects == (tl.SaveConversation(lang, "hospice", 2),)
    (menu,) = tl.render(CONTENT, decision.outcome, tl.TextFacts())
    assert menu.startswith(CONTENT.language(lang).text("language_switched"))


def test_the_language_written_in_is_the_language_answered_in() -> None:
    assert decide("HOSPICIO", "en").outcome == tl.Outcome(tl.SECTION, "es", "hospice", 0)
    assert decide("tratamiento", "en").outcome == tl.Outcome(tl.SECTION, "es", "treatment", 0)
    assert decide("hospice en español", "en").outcome == tl.Outcome(tl.SECTION, "es", "hospice", 0)
    assert decide("LLAMAR", "en").outcome == tl.Outcome(tl.CALLBACK, "es")
    assert decide("5", "es").outcome == tl.Outcome(tl.SECTION, "es", "hospice", 0)
    assert decide("MENU", "es").outcome == tl.Outcome(tl.MENU, "es")  # a word of both languages


def test_menus_offer_the_other_language_in_that_language() -> None:
    english, spanish = tl.menu(CONTENT, "en"), tl.menu(CONTENT, "es")
    assert english.splitlines()[-1] == CONTENT.language("es").text("language_offer")
    assert spanish.splitlines()[-1] == CONTENT.language("es").text("language_back")
    assert "1 RECUR: cancer that returns or spreads" in english.splitlines()
    # Spanish menus leave the keyword out to fit 3 UCS-2 segments (the keyword still works).
    assert "2 tratamiento y ensayos" in spanish.splitlines()


def urgent_cases() -> list[tuple[str, str]]:
    cases = []
    for lang, language in CONTENT.languages.items():
        phrases = [" ".join(words) for words, _ in language.texting.urgent.entries]
        for phrase in phrases:
            cases += [(lang, phrase), (lang, phrase.upper() + "!!"), (lang, f"{SENTENCE[lang].format(phrase)} 😢")]
            typo = with_typo(phrase)
            if typo:
                cases.append((lang, typo))
    return cases


URGENT_CASES = urgent_cases()


def urgent_words_get_911_and_988_first(session: str, lang: str, text: str) -> None:
    decision = decide(text, session, section="coping", next_part=1)
    assert decision.outcome.kind == tl.URGENT, text
    ask = decision.effects[0]
    assert isinstance(ask, tl.RequestCallback) and ask.urgent and ask.kind == decision.outcome.section
    hours = {"en": "Mon-Fri 8:30am-5pm", "es": "lun-vie 8:30-17:00"}
    (message,) = tl.render(CONTENT, decision.outcome, tl.TextFacts(staff_hours=hours))
    words = CONTENT.language(decision.outcome.lang).urgent
    assert words is not None
    assert message == words.kinds[decision.outcome.section].text.format(hours=hours[decision.outcome.lang])
    assert "911" in message and "988" in message


@pytest.mark.parametrize("session", LANGS)
def test_urgent_words_get_911_and_988_first_and_a_flag_for_staff(session: str) -> None:
    """Every urgent phrase of every language, as written, shouted, in a sentence and misspelled, texted
    in a conversation in `session`'s language."""
    found = failures([(session, lang, text) for lang, text in URGENT_CASES], urgent_words_get_911_and_988_first)
    assert not found, report(found)


@pytest.mark.parametrize(
    "text",
    [
        "I want to kill myself",
        "i cant breathe",
        "I can't breathe!!",
        "I CAN’T BREATHE",
        "having chest pain since this morning",
        "I think about suicide a lot",
        "sucide",
        "I've been hurting myself",
        "please call me, I want to die",
        "STOP I want to die",
        "quiero morir",
        "no puedo respirar",
        "tengo dolor en el pecho",
    ],
)
def test_urgent_phrases_people_send(text: str) -> None:
    assert decide(text).outcome.kind == tl.URGENT


def test_after_stop_only_start_help_and_urgent_words_get_a_reply_and_asks_for_staff_are_kept() -> None:
    for text in ["hospice", "5", "MENU", "more", "hello", "", "ESPAÑOL", "blah", "PARAR" + " now"]:
        decision = decide(text, opted_out=True, section="hospice", next_part=1)
        assert decision.outcome.kind == tl.SILENT, text
        assert decision.effects == (), text
        assert tl.render(CONTENT, decision.outcome, tl.TextFacts()) == ()
    call = decide("call me", opted_out=True)
    assert call.outcome.kind == tl.SILENT and call.effects == (tl.RequestCallback("", "en"),)
    # Safety before the opt-out rule (issue 13): urgent words get their answer, and staff a request.
    urgent = decide("I want to die", opted_out=True)
    assert urgent.outcome == tl.Outcome(tl.URGENT, "en", "crisis")
    assert urgent.effects == (tl.RequestCallback("", "en", urgent=True, kind="crisis"),)


def test_outcome_tokens_round_trip_and_reject_garbage() -> None:
    for outcome in [tl.Outcome(tl.SECTION, "es", "hospice", 2), tl.Outcome(tl.SILENT, "en"), tl.Outcome(tl.HELP, "en")]:
        assert tl.Outcome.from_token(outcome.token()) == outcome
    for garbage in ["", "section", "nonsense|en||0", "section|en|hospice|x", "a|b|c|d|e"]:
        assert tl.Outcome.from_token(garbage) is None


def test_odd_stored_conversations_are_made_safe() -> None:
    odd = tl.Conversation(lang="xx", section="gone", next_part=-4, opted_out=False)
    assert tl.sanitize(CONTENT, odd) == tl.Conversation(lang="en")
    far = tl.sanitize(CONTENT, tl.Conversation(lang="es", section="hospice", next_part=99))
    assert far.next_part == len(CONTENT.language("es").sections["hospice"].sms)
    assert decide("more", "xx", section="gone").outcome == tl.Outcome(tl.MENU, "en")


def test_rendering_never_fails_on_a_stale_outcome() -> None:
    for kind in sorted(tl.KINDS):
        for outcome in (tl.Outcome(kind, "xx", "gone", 99), tl.Outcome(kind, "es", "hospice", 99)):
            for message in tl.render(CONTENT, outcome, tl.TextFacts()):
                assert message.strip()


def test_a_whole_section_for_a_caller_ends_with_the_way_on() -> None:
    messages = tl.whole_section(CONTENT, "es", "hospice")
    sms = CONTENT.language("es").sections["hospice"].sms
    assert messages[:-1] == sms[:-1]
    assert messages[-1] == f"{sms[-1]}\n{CONTENT.language('es').text('end_footer')}"


# -- menus, parts and keywords ---------------------------------------------------------------------


def test_menus_and_parts_are_each_their_own() -> None:
    """Every menu and section part is its own, asked in any order."""
    for _ in range(2):
        for lang, language in CONTENT.languages.items():
            for heading in ("menu_heading", "not_understood", "language_switched"):
                menu = tl.menu(CONTENT, lang, heading)
                assert menu.startswith(f"{language.text(heading)}\n")
                topics = language.texting.topics
                assert all(
                    language.text("menu_option", key=s.key, keyword=s.keyword, topic=topics[s.id]) in menu
                    for s in language.sections.values()
                )
            for section in language.sections.values():
                last = len(section.sms) - 1
                for part, message in enumerate(section.sms):
                    footer = language.text("more_footer" if part < last else "end_footer")
                    assert tl.section_message(CONTENT, lang, section.id, part) == f"{message}\n{footer}"


def every_conversation() -> list[tl.Conversation]:
    """Every conversation the text line can be in with a number that has not opted out."""
    found = []
    for lang, language in CONTENT.languages.items():
        found.append(tl.Conversation(lang))
        for section_id in CONTENT.section_ids:
            for next_part in range(len(language.sections[section_id].sms) + 1):
                found.append(tl.Conversation(lang, section_id, next_part))
    return found


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("section_id", CONTENT.section_ids)
def test_a_topic_keyword_gets_its_section_whatever_the_conversation(lang: str, section_id: str) -> None:
    keyword = CONTENT.language(lang).sections[section_id].keyword
    expected = tl.Decision(
        tl.Outcome(tl.SECTION, lang, section_id, 0),
        (tl.SaveConversation(lang, section_id, 1), tl.CountSectionText(section_id)),
    )
    for conversation in every_conversation():
        assert tl.decide(CONTENT, conversation, keyword) == expected
        assert tl.decide(CONTENT, conversation, f"  {keyword.lower()}!") == expected  # as people type it

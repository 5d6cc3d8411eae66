"""The doctor's reference replies of the embedded cohort (the paper's Figures A3 and A6).

A reply names the condition, gives advice specific to it, and mentions this patient's own
notable findings (values outside the pregnancy reference interval of her trimester, falling
platelets) with advice that follows from them. Phrasing is drawn at random from several
variants, so that no two patients get the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pmlm_lib.data.indicators import INDICATOR_BY_NAME, SALIENT, trimester_of_week
from pmlm_lib.data.quality import label_key

OPENINGS = {
    "normal": [
        "Your examination results during this pregnancy are consistent with a normal pregnancy.",
        "Based on your prenatal check-ups, your pregnancy has progressed normally and no specific complication was "
        "diagnosed.",
        "According to your test results and the findings at admission, your condition is normal.",
    ],
    "_": [
        "Based on your examination results and the findings at admission, your diagnosis is {c}.",
        "Your records and test results indicate {c}.",
        "According to your prenatal examinations, you have been diagnosed with {c}.",
        "After reviewing your check-ups from the past months, the discharge diagnosis is {c}.",
    ],
}

ADVICE = {
    "normal": [
        "Keep attending regular prenatal check-ups so that both you and the baby are monitored.",
        "Count fetal movements every day and seek care promptly if they decrease.",
        "Eat a balanced diet with enough protein, iron and folic acid.",
        "Moderate exercise such as walking or prenatal yoga improves circulation; avoid strenuous activity.",
        "Avoid smoking, alcohol and exposure to harmful substances, and keep good sleep habits.",
        "Learn the signs of labour and of rupture of the membranes, and come to hospital when they appear.",
        "Keep a positive mood and share worries with your family or the care team.",
    ],
    "uterine scar": [
        "Because of the scar from your previous caesarean section, plan the delivery with your obstetrician in "
        "advance.",
        "Come to hospital immediately if you feel persistent abdominal pain or pain at the scar.",
        "An ultrasound assessment of the thickness of the lower uterine segment is advised before delivery.",
        "Discuss whether a trial of labour or a repeat caesarean section is safer for you.",
        "Report any vaginal bleeding at once.",
        "Avoid heavy lifting and sudden strain on the abdomen in late pregnancy.",
        "Plan the next pregnancy at least 18 months after this delivery to let the uterus heal.",
    ],
    "acute fetal distress (heart type)": [
        "The baby's heart rate showed signs of distress; continuous fetal heart monitoring is needed.",
        "Lie on your left side to improve blood flow to the placenta.",
        "Oxygen is given when the heart rate pattern is abnormal; follow the midwife's instructions.",
        "Count fetal movements and report any reduction immediately.",
        "If the heart rate does not recover, a prompt delivery may be recommended to protect the baby.",
        "After birth, the paediatric team will assess the newborn carefully.",
    ],
    "acute fetal distress (amniotic fluid type)": [
        "Meconium-stained amniotic fluid was found, which suggests the baby was under stress.",
        "Continuous monitoring of the fetal heart rate is recommended during labour.",
        "A paediatrician will attend the birth to clear the baby's airway if needed.",
        "Report fever, foul-smelling discharge or reduced fetal movement at once.",
        "Delivery may be expedited if the fetal condition worsens.",
        "Watch the newborn for breathing difficulty in the first days.",
    ],
    "placental dysfunction": [
        "The placenta is not supplying the baby as well as it should; regular ultrasound checks of fetal growth and "
        "Doppler blood flow are needed.",
        "Count fetal movements daily and report any decrease immediately.",
        "Rest on your left side to improve placental blood flow.",
        "Keep a nutritious diet rich in protein and iron.",
        "Your blood pressure should be checked regularly, since placental problems and hypertension often go together.",
        "The timing of delivery will be planned according to the baby's growth and wellbeing.",
        "Avoid smoking and second-hand smoke entirely.",
    ],
    "gestational hypertension": [
        "Measure your blood pressure at home every day and record the readings.",
        "Come to hospital at once if you have a severe headache, blurred vision, upper abdominal pain or sudden "
        "swelling.",
        "Take the antihypertensive medicine exactly as prescribed.",
        "Limit salt moderately and keep a diet rich in protein.",
        "Urine protein, kidney and liver function and platelets need regular checks to detect pre-eclampsia early.",
        "Rest more and lie on your left side when possible.",
        "Fetal growth should be followed by ultrasound.",
    ],
    "premature rupture of membranes": [
        "Your membranes ruptured before labour; lie down and avoid walking around until you are assessed.",
        "Keep the perineal area clean and use sterile pads to lower the risk of infection.",
        "Report fever, abdominal pain or foul-smelling fluid immediately, as they may signal infection.",
        "Antibiotics may be given to prevent infection of the uterus and the baby.",
        "If the pregnancy is not yet at term, corticosteroids help the baby's lungs mature.",
        "The colour and amount of the fluid and the fetal heart rate will be monitored closely.",
    ],
    "hypothyroidism": [
        "Take levothyroxine every morning on an empty stomach, as prescribed, and do not stop it on your own.",
        "Thyroid function (TSH and free T4) should be checked every four weeks and the dose adjusted.",
        "Take iron and calcium supplements at least four hours apart from levothyroxine.",
        "Use iodised salt in a moderate amount.",
        "Report marked tiredness, feeling cold, constipation or swelling.",
        "After delivery your dose usually returns to the pre-pregnancy level; have your thyroid checked six weeks "
        "postpartum.",
        "The baby will have a routine thyroid screening after birth.",
    ],
    "uterine rupture": [
        "A rupture of the uterus was diagnosed; this is an emergency that was treated surgically, and close follow-up "
        "is essential.",
        "Watch for signs of bleeding or infection after surgery, such as dizziness, fever or increasing pain.",
        "Blood loss needs correction; take the iron treatment prescribed and recheck your blood count.",
        "A future pregnancy carries a high risk of another rupture; discuss contraception and family planning with "
        "your doctor.",
        "Any future pregnancy should be booked early with a specialist team and delivered by planned caesarean "
        "section.",
        "Emotional support after such an event is important; speak with the care team about how you feel.",
    ],
    "umbilical cord entanglement": [
        "Ultrasound showed the umbilical cord around the baby's neck or body; this is common and usually harmless.",
        "Count fetal movements every day and report any sudden change.",
        "Fetal heart rate monitoring during labour is recommended.",
        "Avoid lying on your back for long periods in late pregnancy.",
        "Most babies with a cord entanglement are born vaginally without problems; the team will guide the delivery.",
        "Attend all scheduled ultrasound and monitoring appointments.",
    ],
    "thalassemia": [
        "You carry a thalassaemia trait, which explains the small red blood cells in your blood count.",
        "Do not take iron supplements unless iron deficiency is confirmed by ferritin testing.",
        "Folic acid supplementation is recommended throughout pregnancy.",
        "Your partner should be tested, and prenatal diagnosis for the baby discussed if he is also a carrier.",
        "Haemoglobin should be checked regularly during pregnancy.",
        "Genetic counselling is advised before a future pregnancy.",
    ],
    "gestational diabetes": [
        "Follow a low-sugar, high-fibre diet and choose whole grains instead of refined rice and noodles.",
        "Monitor your blood glucose regularly as your doctor advised, fasting and after meals.",
        "Eat small meals at regular intervals to avoid both high and low blood sugar.",
        "Walk or do light exercise for about 30 minutes after meals if your obstetrician agrees.",
        "Avoid sweets, juice and sugary drinks.",
        "If insulin is prescribed, follow the dosing instructions strictly.",
        "Fetal growth should be followed by ultrasound, since babies of diabetic mothers may grow large.",
        "Have an oral glucose tolerance test six to twelve weeks after delivery.",
    ],
}

# Advice that follows from a patient's own finding: (indicator, direction) -> sentence.
FINDING_ADVICE = {
    (
        "hemoglobin",
        "low",
    ): "Because your haemoglobin is low, eat iron-rich foods such as lean meat and leafy greens and take iron as "
    "prescribed.",
    (
        "platelet_count",
        "low",
    ): "Your platelet count needs to be rechecked before delivery and before any epidural anaesthesia.",
    (
        "platelet_count",
        "falling",
    ): "Your platelets have been falling; they will be checked again, with blood pressure and liver tests.",
    (
        "alt",
        "high",
    ): "Your liver enzyme ALT is raised; liver function will be rechecked and you should report itching or yellow "
    "skin.",
    (
        "total_bile_acid",
        "high",
    ): "Your bile acids are raised; report itching of the palms or soles, and they will be rechecked.",
    ("wbc", "high"): "Your white cell count is raised; tell us at once if you develop a fever.",
    (
        "neutrophil_ratio",
        "high",
    ): "The high proportion of neutrophils may point to inflammation; a temperature check and infection screening are "
    "advised.",
    ("albumin", "low"): "Your albumin is low; eat enough protein such as eggs, fish, milk and beans.",
    (
        "mcv",
        "low",
    ): "Your red cells are small (low MCV); ferritin and haemoglobin electrophoresis help tell iron deficiency from "
    "thalassaemia.",
    ("prealbumin", "low"): "Your prealbumin is low, a sign to improve your nutrition.",
}


@dataclass(frozen=True)
class Finding:
    indicator: str
    direction: str  # "low", "high" or "falling"
    text: str


def notable_findings(history, max_findings: int = 3, margin: float = 0.05) -> list[Finding]:
    """A patient's notable laboratory findings, most abnormal first.

    `history` (a DataFrame or a mapping of arrays) holds her examinations oldest first, with
    indicator columns and, optionally, `gestational_week` (without it, third-trimester ranges).
    A value counts when it lies beyond the reference interval by more than `margin` of its width.
    """
    weeks = np.asarray(history["gestational_week"], dtype=float) if "gestational_week" in history else None
    scored: list[tuple[float, Finding]] = []
    for name in SALIENT:
        if name not in history:
            continue
        spec = INDICATOR_BY_NAME[name]
        col = np.asarray(history[name], dtype=float)
        seen = np.flatnonzero(~np.isnan(col))
        if seen.size == 0:
            continue
        value = float(col[seen[-1]])
        week = weeks[seen[-1]] if weeks is not None else np.nan
        lo, hi = spec.range_for(trimester_of_week(week) if not np.isnan(week) else 3)
        width = hi - lo
        unit = f" {spec.unit}" if spec.unit else ""
        shown = f"{value:.{spec.decimals}f}{unit}"
        if value < lo - margin * width:
            scored.append(
                (
                    (lo - value) / width,
                    Finding(name, "low", f"a low {spec.label} of {shown} (expected {lo:g}-{hi:g}{unit})"),
                )
            )
        elif value > hi + margin * width:
            scored.append(
                (
                    (value - hi) / width,
                    Finding(name, "high", f"a raised {spec.label} of {shown} (expected {lo:g}-{hi:g}{unit})"),
                )
            )
        elif name == "platelet_count" and seen.size >= 3:
            first = float(col[seen[max(0, seen.size - 6)]])
            if first - value > 0.25 * first:
                scored.append(
                    (
                        (first - value) / first,
                        Finding(
                            name,
                            "falling",
                            f"platelets falling from {first:.0f} to {value:.0f} 10^9/L over your recent visits",
                        ),
                    )
                )
    scored.sort(key=lambda s: -s[0])
    return [f for _, f in scored[:max_findings]]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def write_reply(label: str, history: pd.DataFrame, rng: np.random.Generator) -> str:
    """A clinician-style reply for one patient: condition, her findings, specific advice."""
    openings = OPENINGS["normal"] if label_key(label) == "normal" else OPENINGS["_"]
    parts = [openings[rng.integers(len(openings))].format(c=label)]
    if "gestational_week" in history:
        weeks = np.asarray(history["gestational_week"], dtype=float)
        weeks = weeks[~np.isnan(weeks)]
        if weeks.size:
            n, last = weeks.size, int(weeks.max())
            visits = "one examination" if n == 1 else f"{n} examinations"
            parts.append(
                [
                    f"We reviewed your {visits}, the most recent at {last} weeks of pregnancy.",
                    f"This assessment covers {visits} up to week {last} of your pregnancy.",
                ][rng.integers(2)]
            )
    findings = notable_findings(history)
    if findings:
        lead = ["Among your results we note ", "Your tests show ", "In your most recent examinations there is "][
            rng.integers(3)
        ]
        parts.append(lead + _join([f.text for f in findings]) + ".")
    else:
        parts.append(
            [
                "Your laboratory values have stayed within the expected ranges for pregnancy.",
                "Your blood tests are within the usual ranges for your stage of pregnancy.",
            ][rng.integers(2)]
        )
    pool = ADVICE.get(label, ADVICE["normal"])
    k = int(rng.integers(4, min(6, len(pool)) + 1))
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    chosen += [
        FINDING_ADVICE[(f.indicator, f.direction)] for f in findings if (f.indicator, f.direction) in FINDING_ADVICE
    ]
    intro = [
        "The following recommendations are provided:",
        "We recommend the following:",
        "Please pay attention to the following:",
    ][rng.integers(3)]
    parts.append(intro)
    parts += [f"{i}. {a}" for i, a in enumerate(chosen, start=1)]
    parts.append(
        [
            "Please follow your doctor's advice and seek medical attention promptly if you feel unwell. Wishing you a "
            "smooth pregnancy and a healthy baby!",
            "These recommendations are for reference; the treatment plan is decided by your doctor. Wishing you and "
            "your baby good health.",
            "If anything worries you, contact the obstetric team at any time. We wish you a safe delivery.",
        ][rng.integers(3)]
    )
    return "\n".join(parts)

"""Three worked threat models (notebook 01): a traffic-sign classifier in a car, a card-fraud
detector, and a content-moderation model. Data, built with ``course_utils.threats``.

Sources for the threats: Eykholt et al. 2018 (robust physical perturbations of stop signs),
Gu et al. 2017 (BadNets), Tramer et al. 2016 (stealing models through prediction APIs),
Shokri et al. 2017 (membership inference), Shumailov et al. 2021 (sponge examples),
Cartella et al. 2021 (adversarial attacks on tabular fraud detection), Gao et al. 2018
(DeepWordBug), Wallace et al. 2019 (universal adversarial triggers).
"""
from __future__ import annotations

from .model import Attacker, Threat, ThreatModel


def traffic_sign_classifier() -> ThreatModel:
    """A camera-based traffic-sign classifier in a car; its output feeds the speed planner."""
    T = Threat
    return ThreatModel(
        system="Traffic-sign classifier in a car",
        description="A CNN classifies camera crops of traffic signs on the car's computer; the planner uses the "
                    "result (speed limits, stop, yield). Models arrive by over-the-air update.",
        assets=["correct sign decisions (safety)", "model weights", "update channel", "driving logs"],
        entry_points=["the physical scene seen by the camera", "over-the-air model updates",
                      "training data collected from the fleet", "diagnostics port"],
        attackers=[Attacker("vandal / prankster", "make cars misread a sign", "black-box",
                            ["stickers or paint on real signs", "no access to the model"]),
                   Attacker("insider or supply-chain attacker", "plant a hidden behaviour", "white-box",
                            ["edit training data or labels", "access to the training pipeline"])],
        threats=[
            T("Sticker patch turns STOP into SPEED LIMIT", "Tampering", "Physical adversarial perturbation "
              "(patch) printed and stuck on a real sign; robust to viewpoint and light (Eykholt et al. 2018).",
              "evasion", "sign decisions", "medium", "high",
              "Patch- and transformation-robust training; fuse with map data and a second sensor; plausibility "
              "rules (no 120 km/h in a town).",
              "Physical patch benchmark on held-out signs and angles: attack success rate below a set bound; "
              "fusion disagreement triggers safe fallback in closed-course tests."),
            T("Fleet-data backdoor", "Tampering", "Poisoned fleet images with a small trigger relabelled to "
              "'speed limit' plant a backdoor (Gu et al. 2017).", "backdoor", "model weights", "low", "high",
              "Data provenance and signed contributions; outlier and spectral-signature filtering of training "
              "data; hold-out audits of each release.",
              "Plant a known trigger in a copy of the data: the filter removes it and trigger success on the "
              "trained model stays at chance."),
            T("Forged model update", "Spoofing", "An attacker impersonates the update server and installs "
              "their own model.", "conventional", "update channel", "low", "high",
              "Code-signed models verified on the car (checksum + signature), TLS with pinned certificates.",
              "Flash a model with one flipped byte and one signed by a wrong key: both refused at start-up."),
            T("No record of which model saw what", "Repudiation", "After an incident nobody can show which model "
              "version and which camera frames produced the decision.", "conventional", "driving logs",
              "medium", "medium", "Append-only, signed event logs with model hash, frame hash and decision.",
              "Replay drill: reconstruct a decision from logs alone for 10 random events."),
            T("Model extracted from the car's computer", "Information disclosure", "Weights read off the ECU "
              "give a white-box model for crafting transferable attacks.", "extraction", "model weights",
              "medium", "medium", "Encrypted model storage, secure boot, no debug port in production.",
              "Penetration test of a production unit: weights not recoverable; transfer attack rate from a "
              "leaked older model measured and bounded."),
            T("Sensor flooding", "Denial of service", "Strobe lights or many fake signs make the classifier "
              "miss frames or stall.", "conventional", "sign decisions", "low", "medium",
              "Bounded-latency inference and a safe default when frames are dropped.",
              "Stress test with adversarial scenes: latency p99 stays under the frame budget."),
            T("Diagnostics port gives control", "Elevation of privilege", "The diagnostics interface accepts "
              "model or threshold changes without authentication.", "conventional", "update channel", "low", "high",
              "Authenticate the diagnostics port; read-only in driving mode.",
              "Attempt a threshold change through the port without credentials: refused and logged."),
        ],
    )


def card_fraud_detector() -> ThreatModel:
    """A card-fraud scoring model that approves or blocks transactions in real time."""
    T = Threat
    return ThreatModel(
        system="Card-fraud detector",
        description="A gradient-boosted or neural model scores each card transaction (amount, merchant, hour, "
                    "distance, velocity, device); scores above a threshold are blocked or sent to analysts.",
        assets=["money of the bank and its customers", "the model and its threshold", "customer data", "analyst time"],
        entry_points=["transaction features the fraudster controls (amount, merchant, time, device)",
                      "chargeback labels that feed retraining", "the decline / approve signal"],
        attackers=[Attacker("fraud ring", "get fraudulent transactions approved", "black-box",
                            ["choose amount, timing and merchant", "observe approve/decline", "many stolen cards"])],
        threats=[
            T("Feature manipulation under the threshold", "Tampering", "Fraudsters split amounts, pick merchants "
              "and times so the score falls just under the threshold (Cartella et al. 2021).", "evasion",
              "money", "high", "high", "Features the attacker cannot cheaply control (velocity, device history); "
              "certify stability to small changes of amount and time; velocity rules beside the model.",
              "Red-team simulation with a budget of changes per transaction: detection rate drop stays within "
              "the agreed bound; certified accuracy at the business radius reported."),
            T("Label poisoning through disputed chargebacks", "Tampering", "Colluding accounts file or withhold "
              "disputes so that retraining learns that their pattern is legitimate.", "poisoning",
              "the model", "medium", "high", "Label provenance; cap the weight of any one account or merchant; "
              "compare each retrained model with the previous on a frozen audit set.",
              "Inject synthetic poisoned labels into a training copy: the audit set flags the shift before release."),
            T("Probing the threshold", "Information disclosure", "Many small test transactions reveal which "
              "features and amounts are approved (a query-based attack on the decision boundary).",
              "extraction", "the model and its threshold", "high", "medium",
              "Rate-limit declines per card and merchant; delay or randomize some decisions; alert on probing.",
              "Replay a probing pattern: it is flagged within N transactions."),
            T("Stolen-card testing bots", "Spoofing", "Bots pose as many customers to test stolen cards.",
              "conventional", "money", "high", "medium", "Device fingerprinting, 3-D Secure step-up.",
              "Bot traffic replay: share stepped-up or blocked above target."),
            T("Untraceable model decisions", "Repudiation", "A customer disputes a block and nobody can say "
              "which model version and features decided it.", "conventional", "customer data", "medium", "medium",
              "Log model version, feature vector hash, score and threshold for each decision.",
              "Audit: explain 20 random past decisions from logs alone."),
            T("Scoring latency attack", "Denial of service", "Bursts of transactions push scoring past its "
              "latency budget so the system fails open.", "conventional", "money", "low", "high",
              "Fail closed above a risk level; autoscaling; per-merchant quotas.",
              "Load test at 10x peak: no transaction approved without a score."),
            T("Analyst console bypass", "Elevation of privilege", "A compromised analyst account whitelists cards.",
              "conventional", "the model and its threshold", "low", "high",
              "Two-person rule for whitelists; least privilege; alerts on bulk changes.",
              "Attempt a bulk whitelist with one account: blocked and alerted."),
        ],
    )


def content_moderation() -> ThreatModel:
    """A text and image classifier that removes abusive posts on a social platform."""
    T = Threat
    return ThreatModel(
        system="Content-moderation model",
        description="Classifiers score posts (text and images); high scores are removed automatically, "
                    "middle scores go to human moderators; user reports feed retraining.",
        assets=["users' safety", "moderator time", "the model", "reporters' identities"],
        entry_points=["post text and images", "user reports (labels)", "the public moderation outcome"],
        attackers=[Attacker("abusive users", "publish abuse that stays up", "black-box",
                            ["misspellings, homoglyphs, word substitutions, image overlays", "see if a post stays up"]),
                   Attacker("coordinated group", "get legitimate speech removed", "black-box",
                            ["mass reporting", "many accounts"])],
        threats=[
            T("Character and word substitutions", "Tampering", "'1d10t', homoglyphs and synonym swaps keep the "
              "meaning for readers but not for the model (Gao et al. 2018).", "evasion", "users' safety",
              "high", "medium", "Normalize text (Unicode, leetspeak), train on substitution attacks, "
              "route borderline scores to humans.",
              "Attack suite of substitution attacks on a held-out abusive set: recall under attack above target."),
            T("Mass-report poisoning", "Tampering", "Coordinated reports teach retraining that a group's normal "
              "speech is abuse.", "poisoning", "the model", "medium", "high",
              "Weight reports by reporter reliability; detect coordinated reporting; audit per-group error rates.",
              "Simulated brigading on a training copy: per-group false-positive rate stays within bound."),
            T("Fake reporter accounts", "Spoofing", "Sock puppets pose as independent users.", "conventional",
              "moderator time", "high", "medium", "Account reputation, rate limits on reports.",
              "Replay a known brigade: its reports are down-weighted."),
            T("Universal trigger phrase", "Elevation of privilege", "A short phrase appended to any post flips it "
              "to 'acceptable' (Wallace et al. 2019), letting anyone bypass the filter.", "evasion",
              "users' safety", "medium", "high", "Adversarial training with triggers; ensemble with a "
              "different architecture; monitor phrases common in passed-but-reported posts.",
              "Search for universal triggers on the release candidate: best trigger's flip rate below bound."),
            T("Membership inference on reports", "Information disclosure", "Confidence scores reveal whether a "
              "given post was in the training set of reports (Shokri et al. 2017).", "inference",
              "reporters' identities", "low", "medium", "Return decisions, not scores; regularize or train "
              "with differential privacy.", "Membership-inference attack on the model: AUC close to 0.5."),
            T("Sponge posts", "Denial of service", "Inputs crafted to maximize compute or energy (Shumailov et "
              "al. 2021) slow moderation down.", "evasion", "moderator time", "low", "medium",
              "Cap input length and per-request compute; timeouts route to a queue.",
              "Sponge-example search against the service: latency p99 stays under budget."),
        ],
        not_applicable={"Repudiation": "Every decision is already logged with model version and post id by the "
                                       "platform's audit system, which is threat-modeled separately."},
    )


EXAMPLES = {"traffic_sign": traffic_sign_classifier, "card_fraud": card_fraud_detector,
            "content_moderation": content_moderation}

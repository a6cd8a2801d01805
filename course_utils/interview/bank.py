"""The interview question bank of notebook 09, as data: (id, area, question, strategy, answer, experiment).

``experiment`` names the section of notebook 09 (or the notebook) whose numbers back the answer.
Loaded as ``course_utils.interview.QUESTIONS``.
"""
from __future__ import annotations

BANK = [
    # ---- threat modeling -------------------------------------------------------------------
    ("tm-scope", "threat modeling",
     "Before you pick a defense for a new image model, what do you ask?",
     "Answer with the threat model, not a technique: goal, knowledge, capabilities, assets, cost of errors.",
     "I ask who the attacker is and what they want (any error, or a specific target class), what they know "
     "(white-box weights, grey-box architecture, black-box labels only), and what they can change (pixels within "
     "a budget, a physical patch, the training data, the number of queries). Then what the assets are and what a "
     "mistake costs, in which direction. Only then does a defense make sense: adversarial training answers a "
     "bounded-perturbation evasion threat, rate limits and label-only outputs answer extraction, data provenance "
     "answers poisoning. I write it down (notebook 01's ThreatModel) so the tests of each mitigation are explicit.",
     "notebook 01"),
    ("tm-one-norm", "threat modeling",
     "Your model is robust at L-infinity eps = 8/255. Is it secure?",
     "Separate 'robust in one threat model' from 'secure'; name the threat models it does not cover.",
     "No, it is robust to one threat model. Robustness to L-infinity perturbations does not carry over to others: "
     "Tramer & Boneh (2019) show models trained for one Lp ball stay weak in others, and rotations/translations "
     "(Engstrom et al. 2019), patches (Brown et al. 2017) and word substitutions break models that no small Lp "
     "budget describes. Poisoning, backdoors, extraction and inference attacks are not evasion at all. Optimizing "
     "for one norm only gives a false sense of security; I'd state the covered threat model next to every number "
     "and test the others that the threat model says are likely.",
     "notebook 01"),
    ("tm-stride-api", "threat modeling",
     "Walk through STRIDE for a classifier served behind a public prediction API.",
     "One concrete threat per letter, each with a mitigation and a test; say which are ML-specific.",
     "Spoofing: stolen or app-embedded API keys (per-device attestation, key rotation). Tampering: adversarial "
     "inputs (adversarial training, input checks), poisoned feedback data (provenance). Repudiation: unlogged "
     "queries (durable per-client logs). Information disclosure: model extraction and membership inference through "
     "scores (return labels only, query budgets, DP training). Denial of service: query floods and expensive inputs "
     "(rate limits, size limits). Elevation of privilege: a misclassification or backdoor trigger that bypasses a "
     "policy (don't let one model decision grant privileges, keep humans in the loop for costly actions). For each "
     "I name the test, e.g. 'PGD-50 at eps 0.3 on 1,000 images stays above X%' or 'a probing pattern is flagged "
     "within N queries'.",
     "notebook 01, exercise"),
    ("tm-backdoor", "threat modeling",
     "How does a backdoor differ from an adversarial example, and how would you test a model for one?",
     "Training time versus test time; the trigger is chosen by the attacker and works on any input; name detection methods.",
     "An adversarial example is crafted at test time against a fixed model; a backdoor is planted at training time "
     "by poisoning (BadNets, Gu et al. 2017): a few training images carry a trigger and the target label, and the "
     "model learns 'trigger means target' while clean accuracy stays normal, so ordinary validation does not see "
     "it. Notebook 01 shows this: a small poisoned fraction gives high trigger success at almost unchanged clean "
     "accuracy. Tests: data provenance and audits, spectral signatures (Tran et al. 2018) and activation clustering "
     "on the training set, trigger reverse-engineering (Neural Cleanse, Wang et al. 2019), and STRIP-style input "
     "perturbation checks at run time.",
     "notebook 01: backdoor demo"),
    ("tm-extraction", "threat modeling",
     "How can someone steal a model through its prediction API, and what makes it harder?",
     "Explain the attack as supervised learning on the API's answers; mitigations lower information per query or queries.",
     "The attacker sends their own unlabeled inputs, records the answers, and trains a copy on them (Tramer et al. "
     "2016; Orekondy et al. 2019). Agreement with the victim grows with the number of queries, as the curve in "
     "notebook 01 shows; probabilities leak more per query than labels. Mitigations: return labels, not scores; "
     "per-client query budgets and rate limits; detect query patterns typical of extraction (Juuti et al. 2019, "
     "PRADA); watermark the model to prove theft. Test: run the extraction yourself against the defended API and "
     "report agreement at the budget an attacker can afford.",
     "notebook 01: extraction demo"),
    # ---- attack maths ---------------------------------------------------------------------
    ("am-fgsm", "attack maths",
     "Derive FGSM. Why the sign of the gradient?",
     "Linearize the loss, maximize a linear function over the L-infinity ball, use the dual norm.",
     "Around x, L(x + delta) ~ L(x) + g^T delta with g = grad_x L. Maximizing g^T delta over ||delta||_inf <= eps "
     "gives delta = eps * sign(g) and the value eps * ||g||_1 (the L1 norm is the dual of L-infinity). So FGSM, "
     "x' = clip(x + eps * sign(g), 0, 1) (Goodfellow et al. 2015), is the optimal step for the linearized loss. "
     "Under L2 the same argument gives delta = eps * g / ||g||_2. It is only as good as the linear approximation, "
     "which is why iterative attacks beat it.",
     "notebook 02"),
    ("am-pgd", "attack maths",
     "What does PGD add to FGSM, and why random starts and restarts?",
     "Iterate small steps with projection; random start and restarts handle non-concave losses and masking at x.",
     "PGD (Madry et al. 2018) repeats delta <- Proj_{||delta|| <= eps}(delta + alpha * sign(grad)) and clips to "
     "[0, 1], so it follows the loss instead of trusting one linearization. A random start in the ball avoids "
     "points where the gradient at x itself is uninformative (e.g. after FGSM training), and restarts pick the "
     "best of several local maxima. Step size alpha must be large enough that steps * alpha reaches the ball's "
     "edge (e.g. 2.5 * eps / steps). Madry et al. argue PGD is the strongest first-order adversary in practice.",
     "notebook 03"),
    ("am-norms", "attack maths",
     "Compare L-infinity, L2 and L0 perturbations. How large is the L2 norm of an L-infinity perturbation of 0.3 on MNIST?",
     "Say what each norm limits; bound ||delta||_2 <= eps * sqrt(d); then give the measured value.",
     "L-infinity limits every pixel's change, L2 the total energy, L0 the number of changed pixels. For "
     "||delta||_inf <= eps, ||delta||_2 <= eps * sqrt(d) = 0.3 * 28 = 8.4 on MNIST, and an FGSM perturbation is "
     "close to that bound except where clipping to [0, 1] cancels it (most MNIST pixels are 0, so every negative "
     "step there is clipped away). The experiment in this notebook measures it. So an 'eps = 0.3' L-infinity attack is a huge "
     "L2 perturbation, and robustness in one norm says little about another.",
     "09: Lp norms"),
    ("am-loss", "attack maths",
     "Cross-entropy or margin loss for the attack? What does AutoAttack's DLR loss fix?",
     "Cross-entropy saturates and depends on logit scale; margin losses and DLR do not.",
     "Cross-entropy's gradient vanishes when the model is very confident, and rescaling logits changes it, which "
     "some defenses exploit by accident (gradient masking). The Carlini-Wagner margin loss "
     "max_{j != y} z_j - z_y targets the decision directly. DLR (Croce & Hein 2020) divides the margin by "
     "z_pi1 - z_pi3 so it is invariant to shifting and rescaling the logits; APGD with DLR catches defenses "
     "that only looked robust under cross-entropy.",
     "notebook 03"),
    ("am-why", "attack maths",
     "Why do adversarial examples exist at all?",
     "Give two views: linearity in high dimension, and non-robust but predictive features.",
     "Goodfellow et al. (2015): models are close to linear, and a tiny change per pixel adds up over thousands of "
     "pixels (the eps * ||w||_1 argument). Ilyas et al. (2019): data contain features that are predictive but "
     "brittle to humans' eyes; standard training uses them, so small changes to them flip predictions, and models "
     "trained only on such 'non-robust' features still generalize. Both explain why robustness must be trained "
     "for and why it costs some accuracy (Tsipras et al. 2019).",
     None),
    # ---- adversarial training ----------------------------------------------------------------
    ("at-objective", "adversarial training",
     "Write the adversarial training objective and explain each part.",
     "min over theta of the expected max over the threat set; inner by PGD, outer by SGD; Danskin's theorem.",
     "min_theta E_{(x,y)} [ max_{||delta|| <= eps} L(f_theta(x + delta), y) ] (Madry et al. 2018). The inner "
     "maximization is approximated by PGD on each batch; the outer minimization is SGD on the loss at the "
     "adversarial points, which by Danskin's theorem is a descent direction for the robust loss when the inner "
     "maximum is found. The threat set (norm, eps) is part of the objective: the model is robust to what it was "
     "trained against, not more.",
     "notebook 04"),
    ("at-product", "adversarial training",
     "Robust training cost 5% clean accuracy; the product team objects: what do you do?",
     "Do not argue from principle: measure both risks in money, break the cost down (per class), and offer options.",
     "First I make the trade-off concrete: what does 5% more clean errors cost per month, and what would an "
     "attack cost given the threat model's likelihood? Then I break the 5% down: per class (this notebook measures "
     "it; the loss is usually concentrated in a few similar-looking classes) and per customer segment, because a "
     "concentrated loss can be fixed. Options: tune eps to the real threat (smaller eps costs less), TRADES' beta "
     "to trade explicitly (Zhang et al. 2019), more data or pre-training (Carmon et al. 2019 used unlabeled "
     "data), a larger model, or route only risky traffic (unknown clients, flagged inputs) to the robust model. "
     "I'd agree on an acceptance test with them (clean accuracy floor and robust accuracy floor with its threat "
     "model) and ship behind an A/B test.",
     "09: per-class trade-off"),
    ("at-cost", "adversarial training",
     "How much more does adversarial training cost, and how do you make it cheaper?",
     "PGD-k costs about k + 1 forward-backward passes per batch; name FGSM-RS, free AT, and what they risk.",
     "Each PGD-k training step needs k extra forward and backward passes, so PGD-7 training is roughly 8x "
     "standard training. FGSM with random start (Wong et al. 2020) uses one extra pass with alpha = 1.25 eps and "
     "reaches similar robustness if you guard against catastrophic overfitting; 'free' adversarial training "
     "(Shafahi et al. 2019) reuses the backward pass for the perturbation. This notebook measures the time per "
     "batch of standard versus FGSM-RS training on this machine.",
     "09: cost per batch"),
    ("at-trades", "adversarial training",
     "What is TRADES and how does it differ from Madry's adversarial training?",
     "Write the loss: natural cross-entropy plus beta times a KL term between clean and adversarial outputs.",
     "TRADES (Zhang et al. 2019) minimizes CE(f(x), y) + beta * max_{x'} KL(f(x) || f(x')): it keeps the clean "
     "classification loss and adds a smoothness term that pushes the decision boundary away from the data. The "
     "inner maximization attacks the KL term, not the label loss. beta sets the trade-off explicitly (beta = 6 in "
     "the paper), whereas Madry's objective trains only on adversarial points.",
     "09: section 2a (TRADES beside FGSM-RS on the same budget)"),
    ("at-per-class", "adversarial training",
     "Which classes lose most clean accuracy under adversarial training, and why does it matter?",
     "Per-class breakdown; similar classes lose most; fairness angle (Xu et al. 2021).",
     "Adversarial training does not cost every class the same: classes close to others in input space (on CIFAR-10 "
     "cat and dog) lose most clean and robust accuracy, so an average hides a large "
     "drop on some (Xu et al. 2021, 'To be robust or to be fair'). It matters because a 5% average may be a 15% "
     "loss for one product category. This notebook measures the per-class drop between a standard and an "
     "FGSM-RS trained MNIST CNN.",
     "09: per-class trade-off"),
    ("at-seventy", "adversarial training",
     "A manager asks for a ResNet on CIFAR-10 that keeps more than 70% accuracy under strong PGD at 8/255. "
     "What do you answer?",
     "Say where the state of the art stands (RobustBench, AutoAttack), what 70% costs (model size, generated data, "
     "compute), what your own budget reaches, and which threats 70% still leaves open.",
     "That is the state of the art, not a ResNet recipe. On RobustBench (CIFAR-10, L-infinity 8/255, AutoAttack on "
     "the 10,000 test images) the single adversarially trained models at 70% or more are large (Ra)WideResNets of 79 "
     "to 366 million parameters trained with 50 to 300 million generated images: Bartoldson et al. (2024), "
     "WRN-94-16 with 300M synthetic images, 93.68% clean / 73.71% AutoAttack; Wang et al. (2023), WRN-70-16 with "
     "50M, 93.25% / 70.69%; the entries above them post-process or ensemble such models. A ResNet-18 trained on "
     "CIFAR-10 alone reaches about 52% (Addepalli et al. 2022: 85.71% / 52.48%), Wong et al.'s fast "
     "PreActResNet-18 43.21%, and 100M generated images lift a PreActResNet-18 to 58.63% (Gowal et al. 2021). "
     "'Strong PGD' is also the wrong yardstick: AutoAttack is the number to quote, and it can be lower (Wong et "
     "al. reported 46.06% under PGD-50 x 10 for their recipe, AutoAttack gives their model 43.21%; Rice et al. "
     "reported 58%, AutoAttack gives 53.42%). So I offer options with prices: a ResNet-18 on CIFAR-10 alone "
     "(about 52%), the same with a generative model and 100M generated images (about 59%), and 70% only with a "
     "WideResNet of tens to hundreds of millions of parameters, tens of millions of generated images and the training "
     "compute that goes with them; Bartoldson et al.'s scaling laws predict that robustness plateaus near 90% "
     "however far one scales. And 70% at L-infinity 8/255 is one threat model: it says nothing about L2, other "
     "radii, rotations and translations, patches, corruptions or poisoning, so I would ask which of those the "
     "product faces before spending the budget. Notebook 05 puts my own model on the same plot.",
     "notebook 05, section 5 (the RobustBench table and plot)"),
    # ---- overfitting ---------------------------------------------------------------------
    ("ov-catastrophic", "robust overfitting",
     "What is catastrophic overfitting in FGSM training, and how do you detect and prevent it?",
     "Describe the symptom (FGSM accuracy up, PGD accuracy to ~0 within an epoch), then the fixes.",
     "With single-step training, the model can suddenly learn a locally non-linear loss surface where the FGSM "
     "step no longer finds adversarial points: accuracy against FGSM keeps rising while accuracy against PGD "
     "falls to near zero within an epoch (Wong et al. 2020). Detect it by evaluating PGD on a small held-out batch "
     "every epoch. Prevent it with a random start and a moderate step (alpha around 1.25 eps), early stopping on "
     "the PGD check, or GradAlign's gradient-alignment regularizer (Andriushchenko & Flammarion 2020).",
     "notebook 04"),
    ("ov-robust", "robust overfitting",
     "What is robust overfitting, and what do you do about it?",
     "Test robust accuracy peaks (often right after an LR decay) then falls while training robust accuracy rises.",
     "Rice et al. (2020) showed that in PGD training on CIFAR-10 the test robust accuracy peaks, usually just "
     "after the first learning-rate decay, and then declines while the training robust loss keeps falling; the "
     "generalization gap of robustness is much larger than the clean one. The most effective remedy is early "
     "stopping on a held-out PGD check; weight averaging, adversarial weight perturbation (Wu et al. 2020) and "
     "more data help too. Report the checkpoint selection rule, since picking by test robustness is leakage.",
     "notebook 05"),
    # ---- gradient masking ------------------------------------------------------------------
    ("gm-checklist", "gradient masking",
     "A new defense shows 95% accuracy under PGD. What do you check before you believe it?",
     "Recite the sanity checks of Carlini et al. (2019) and Athalye et al. (2018); run an adaptive attack.",
     "Accuracy must go to zero as eps grows (an unbounded attack always wins); iterative attacks must beat "
     "single-step ones; more steps and restarts must not help much more; white-box must beat black-box and "
     "transfer attacks; a gradient-free attack (Square) must not beat the gradient one; the loss should increase "
     "smoothly along the attack. Then AutoAttack and an attack adapted to the defense's mechanism. This "
     "notebook runs two of these checks on the FGSM-RS model: FGSM versus PGD, and an epsilon sweep.",
     "09: sanity checks"),
    ("gm-obfuscated", "gradient masking",
     "What are obfuscated gradients? Name the three kinds and the counter to each.",
     "Athalye, Carlini & Wagner (2018): shattered, stochastic, exploding/vanishing; BPDA, EOT, reparameterize.",
     "Defenses that make gradients useless rather than the model robust. Shattered gradients (non-differentiable "
     "preprocessing such as quantization or JPEG): attack with BPDA, using the identity (or a smooth "
     "approximation) on the backward pass. Stochastic gradients (random resizing, dropout at test time): "
     "Expectation over Transformation, averaging gradients over the randomness. Exploding or vanishing gradients "
     "(iterative purification, very deep unrolled computation): reparameterize so the attack optimizes a "
     "well-behaved variable. Seven of the nine ICLR 2018 defenses they studied relied on obfuscated gradients.",
     "notebook 06"),
    ("gm-adaptive", "gradient masking",
     "What is an adaptive attack, and how do you design one?",
     "The attacker knows the defense; target its mechanism with the simplest loss that succeeds.",
     "An attack designed against the full system, defense included, under the assumption (Kerckhoffs) that the "
     "attacker knows how it works. Tramer et al. (2020, 'On adaptive attacks to adversarial example defenses') "
     "recommend: understand what the defense relies on, write one loss that both fools the classifier and "
     "evades the detector, make it differentiable (BPDA, EOT), start simple, and verify with a sanity check that "
     "it reaches 100% success when the defense is removed or eps is large.",
     "notebook 06"),
    # ---- input sanitization -------------------------------------------------------------
    ("is-bypass", "input sanitization",
     "How would an attacker bypass input sanitization?",
     "Attack the composition model(sanitize(x)); deal with non-differentiability and detectors explicitly.",
     "Treat the sanitizer as part of the model and attack f(s(x)). If s is non-differentiable (bit-depth "
     "reduction, JPEG, median filter), use BPDA: forward through s, backward as identity. If it is random, use "
     "EOT. If there is a detector, add its score to the loss so the example fools the model and stays under the "
     "threshold (Carlini & Wagner 2017 bypassed ten detectors this way). High-confidence examples also survive "
     "squeezing (He et al. 2017). Or pick a threat the sanitizer does not consider (a patch rather than small "
     "noise). Notebook 06 measures all three and prints a verdict for each: the adaptive attack on CIFAR-10 "
     "squeezing at 8/255, high-confidence CW-L2 against MNIST squeezing, and the case where 1-bit squeezing held "
     "(MNIST at 0.3, with the share of pixels binarization leaves within reach); notebook 09 section 2f "
     "recomputes the CIFAR-10 rows.",
     "notebook 06"),
    ("is-worth", "input sanitization",
     "Then why would you ever deploy input sanitization?",
     "Cheap, helps against non-adaptive and transfer attacks, and gives a monitoring signal; never count it as robustness.",
     "It is cheap, does not require retraining, and stops unsophisticated and transfer attacks and accidental "
     "corruptions, which are most of what many systems see. A detector's flag rate over time is a useful "
     "security metric for monitoring. It belongs in a layered defense with an adversarially trained or "
     "certified model; I would not report robustness numbers that rely on it unless they hold under an "
     "adaptive attack.",
     "notebook 06"),
    # ---- data poisoning ----------------------------------------------------------------------
    ("dpo-detect", "data poisoning",
     "How would you know your training data was poisoned?",
     "Not from clean accuracy: say what does reveal it (representations, a planted drill, provenance) and how you "
     "would know the check works.",
     "Not from the test set: a backdoor leaves clean accuracy where it was, and the honest way to say so is an "
     "equivalence test on the paired difference, which notebook 06b prints for my run. I look where the poison "
     "leaves a trace: in the representations of the model trained on the data. Spectral signatures (Tran et al. "
     "2018) score each image of a class by its squared projection on the top singular vector of the centred "
     "penultimate features; activation clustering (Chen et al. 2018) splits each class in two and flags a small "
     "cluster. Two details decide whether they work: the layer (ART reads the logits by default; the penultimate "
     "layer separates better) and centring (ART's and the authors' code project uncentred features). I quote my "
     "run's recall and the share of clean images removed, and, what matters, the trigger success after retraining "
     "on what was kept. And I test the pipeline with a planted-trigger drill, as project p4 does before it "
     "retrains on captured uploads, and keep provenance: who could write into the training set.",
     "notebook 06b (sections 2-3), project p4"),
    ("dpo-certificate", "data poisoning",
     "What does a certificate against poisoning promise, and what does it cost?",
     "State the guarantee exactly (a number of training images, per prediction) and the price (clean accuracy, "
     "k models); quote your k trade-off.",
     "Deep Partition Aggregation (Levine & Feizi 2021) splits the training set into k partitions by a hash of "
     "each image, trains one model per partition and takes the vote. One poisoned image, inserted, removed or "
     "relabelled, changes one partition, so one vote: a prediction with n_c votes against a runner-up with n_c' "
     "cannot change while at most floor((n_c - n_c' - 1[c' < c]) / 2) training images are poisoned, whatever "
     "they are. It promises that for that prediction only, not for the model, and says nothing about test-time "
     "perturbations. The cost: each model sees 1/k of the data, so clean accuracy falls as k grows, and you "
     "train and serve k models. The paper's MNIST anchor is a median certificate of 448 images at 95.81% clean "
     "with k = 1,200; my quick run with logistic-regression base learners prints its own k trade-off (clean "
     "accuracy and certified accuracy per k, with a paired test), and the hash must use the stored pixels: "
     "ART's default sum over [0, 1] floats leaves most of 1,200 partitions empty.",
     "notebook 06b (section 4)"),
    ("dpo-adaptive", "data poisoning",
     "Your poison detector removed most of the planted poison in a test. Are you safe?",
     "A detector tested on its own attack proves little: name the adaptive attack and what 'safe' is measured by.",
     "Not yet. Recall on a plain BadNets or blend attack is the non-adaptive number. An attacker who knows the "
     "detector makes the poison look clean in representation space: Qi et al. (2023)'s adaptive blend puts a "
     "partial, faint trigger on the poison and adds cover images that carry it with their true label, and a "
     "poison rate below what the detector separates does the same. Notebook 06b measures both detectors against "
     "that attack, and the verdict that counts is whether the backdoor survives removal and retraining, not the "
     "recall. For a guarantee that does not depend on the attacker's cleverness, only on its budget, use a "
     "certificate such as DPA, and check it the same way: an attacker who places poison in partitions of its "
     "choice must never flip a certified prediction.",
     "notebook 06b (section 5)"),
    # ---- certified defenses --------------------------------------------------------------
    ("cd-when", "certified defenses",
     "Empirical versus certified defenses: when each?",
     "Empirical: best accuracy, a lower bound on attacker effort. Certified: a proof for a stated radius. Tie to stakes.",
     "An empirical defense (adversarial training) is evaluated by attacking it: its robust accuracy is an upper "
     "bound that a better attack can lower. A certified defense (randomized smoothing, IBP) proves that no "
     "perturbation within radius r changes the prediction, at the price of lower clean accuracy, smaller radii, "
     "and for smoothing, many forward passes and abstentions. I'd use empirical defenses where performance matters "
     "and the threat is moderate, and certificates where a decision must be provably stable, e.g. a regulated "
     "decision or a release gate in CI (notebook p3), often both: certify at a small radius, adversarially "
     "train for larger ones.",
     "notebooks 07, 08"),
    ("cd-smoothing", "certified defenses",
     "Explain randomized smoothing's guarantee and what it costs.",
     "g(x) = argmax P(f(x + N(0, sigma^2 I)) = c); R = sigma * PhiInverse(pA_lower); Monte Carlo; abstain.",
     "The smoothed classifier predicts the class most likely under Gaussian noise. If the top class has "
     "probability at least pA_lower > 1/2 (a one-sided Clopper-Pearson bound from n noisy samples), g is constant "
     "within L2 radius R = sigma * PhiInverse(pA_lower) (Cohen et al. 2019). Costs: n forward passes per "
     "prediction (100,000 in the paper), the largest certifiable radius is capped by n, larger sigma buys radius "
     "but loses clean accuracy, it abstains when unsure, and it certifies L2 only (L-infinity radii shrink with "
     "sqrt(d)).",
     "notebook 07"),
    ("cd-ibp", "certified defenses",
     "How does interval bound propagation work, and why does a normally trained network verify almost nothing?",
     "Propagate boxes through affine layers (center/radius) and ReLU (monotone); looseness compounds with depth.",
     "IBP pushes the box [x - eps, x + eps] through the network: an affine layer maps center c and radius r to "
     "Wc + b and |W| r, a ReLU clips both ends. A point is verified when the lower bound of the true logit "
     "exceeds the upper bound of every other one. The bounds are sound but loose, and looseness multiplies with "
     "depth, so a normally trained network's bounds are far too wide. IBP training (Gowal et al. 2018) minimizes "
     "the loss at the worst-case bounds with an eps ramp-up and a mix of natural and verified loss.",
     "notebook 08"),
    ("cd-crown", "certified defenses",
     "IBP, CROWN, the LP relaxation and exact verification: how do they differ, and when would you use each?",
     "Exact (MILP) >= triangle LP >= CROWN as margin lower bounds; IBP is cheapest and loosest on normal networks.",
     "Verification asks for the minimum of the margin z_y - z_j over the box. A mixed-integer program with one "
     "binary per unstable ReLU (Tjeng et al. 2019) answers exactly, or returns a counterexample, but is exponential. "
     "Replacing each unstable ReLU by its convex hull, the triangle, gives an LP (Wong & Kolter 2018): the "
     "tightest single-neuron convex bound, polynomial but one solve per margin. CROWN (Zhang et al. 2018; DeepPoly) "
     "keeps one upper and one lower line per ReLU and propagates them backwards in closed form: looser than the LP, "
     "on normally trained networks far tighter than IBP, but one backward pass per unstable neuron. IBP is a single "
     "forward pass: use it to train (Gowal et al. 2018) and on IBP-trained networks, whose ReLUs are mostly stable; "
     "use CROWN or better to verify a normally trained network at small eps; MILP for tiny networks or to find "
     "counterexamples. Notebook 08b measures all four on the same networks.",
     "notebook 08b"),
    # ---- evaluation ----------------------------------------------------------------------
    ("ev-autoattack", "evaluation",
     "What is AutoAttack and why report it beside PGD?",
     "Ensemble of four parameter-free attacks; catches defenses tuned against PGD with cross-entropy.",
     "AutoAttack (Croce & Hein 2020) runs APGD with cross-entropy, targeted APGD with the DLR loss, targeted FAB and "
     "the black-box Square attack, and counts an example as robust only if all fail. Its step sizes adapt, so "
     "there is nothing to tune, and it lowered the reported robustness of many published defenses. RobustBench "
     "uses it as the standard. I report PGD with restarts and AutoAttack on the same images with the threat "
     "model; a large gap between them is itself a warning sign.",
     "notebook 04"),
    ("ev-report", "evaluation",
     "How do you report a robust accuracy number?",
     "Threat model, attack and its parameters, number of images, confidence interval, and the sanity checks.",
     "In this form: 'a% (95% CI lo-hi) under PGD-50, L-infinity eps = 8/255, step 2/255, 10 restarts, 1,000 test "
     "images', with AutoAttack on the same images beside it. Inputs in [0, 1] with normalization inside the "
     "model, eps in pixel units, model in eval mode. On few images the interval is wide: on 100 images a 50% "
     "accuracy has a 95% Clopper-Pearson interval of about 40-60%, so differences of a few points mean nothing.",
     "09: sanity checks"),
    # ---- deployment and incident response ---------------------------------------------------
    ("dp-incident", "deployment and incident response",
     "A deployed model is being fooled: walk through your response.",
     "Incident-response phases: detect and confirm, contain, preserve evidence, analyse, remediate, verify, learn.",
     "Confirm it (flagged-rate spike, user reports, examples in hand) and estimate the impact. Contain: rate-limit "
     "or block the sources, route affected traffic to a safer path (human review, a more robust model, abstention), "
     "roll back if a recent release caused it. Preserve the logs and the inputs. Analyse: what kind of attack "
     "(transfer, query-based black-box, physical, poisoning of a recent retrain), which threat-model assumption "
     "failed: is it a new attack family outside the trained ball (a rotation, a patch, another Lp norm) or a "
     "weakness of the Lp defense itself? Replay the inputs against each threat model: an L-infinity-trained "
     "model can keep its L-infinity accuracy and still fall to L2, spatial or sparse changes (your table of "
     "notebook 04, section 9). Contain meanwhile with an ensemble and a detector for the new family. "
     "Remediate: retrain with the new attack in the loop (a union of threat models costs clean and L-infinity "
     "accuracy: quote your table), add a detector for the query pattern, fix "
     "the pipeline. Verify with a regression test that replays the incident's inputs, ship, and update the threat "
     "model and runbook in a blameless postmortem.",
     "notebook 04 (section 9: the L-infinity trap), project p4"),
    ("dp-monitor", "deployment and incident response",
     "How do you monitor a production model for adversarial activity?",
     "Per-client query patterns, detector flag rates, confidence and prediction drift, canaries; alert thresholds.",
     "Log every request with client, time, prediction and confidence. Watch per-client query patterns: many "
     "near-duplicate queries in a short time are the signature of query-based black-box attacks (Chen, Carlini & "
     "Wagner 2020, stateful detection). Track the rate of inputs flagged by a squeezing or reconstruction detector, "
     "the distribution of confidences and predicted classes against a baseline, and plant canary inputs whose "
     "answers must not change. Alert on deviations with thresholds chosen for an acceptable false-alarm rate.",
     "project p4"),
    # ---- cost-sensitive choices ------------------------------------------------------------
    ("cs-choose", "cost-sensitive choices",
     "Your budget allows one of: adversarial training, an input detector, or rate limiting. How do you choose?",
     "Expected loss reduction per unit cost, from the threat model; attacker access decides a lot.",
     "I rank by expected loss avoided: likelihood x impact x how much each measure reduces it, minus its cost. If "
     "attackers are outsiders with API access only, query-based and extraction attacks need many queries, so "
     "rate limiting and label-only outputs are cheap and effective; adversarial training costs compute and clean "
     "accuracy but helps against transfer attacks and physical inputs; a detector alone falls to adaptive attacks. "
     "I state the assumption that drives the choice and the test that would tell me I was wrong.",
     "notebook 01"),
    ("cs-asymmetric", "cost-sensitive choices",
     "Errors have different costs (a missed fraud versus a false decline). How does that change the defense?",
     "Protect the costly direction: cost-sensitive robustness, thresholds, and certificates for the costly class.",
     "An attacker only gains from some errors: a fraudster wants fraud scored as legitimate, never the reverse. "
     "So I make robustness cost-sensitive (Zhang & Evans 2019 weight adversarial losses by a cost matrix), set "
     "the decision threshold by expected cost rather than accuracy, and evaluate targeted attacks in the costly "
     "direction, reporting, e.g., certified recall on the fraud class at the business radius rather than average "
     "accuracy.",
     "project p3"),
]

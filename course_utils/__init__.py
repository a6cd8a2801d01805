"""course_utils: the toolbox of the course, laid out like the course map.

Infrastructure (every lesson)
    config        device (``get_device``), seed, smoke / quick / full profile, data and cache folders
    data          MNIST, CIFAR-10 (offline JPEG copy), rt-polarity; loaders and seeded subsets
    models        the course's architectures; each normalises inside, so inputs are pixels in [0, 1]
    validation    argument checks with clear ``ValueError``s; ``eval_mode``
    viz, widgets  plots and the ipywidgets attack explorer

Lessons
    00 set-up and course map          config.describe, config.profile_table
    01 threat modeling                threats (ThreatModel, worked examples, extraction and backdoor demos)
    02 adversarial examples           attacks (fgsm), evaluation, viz, widgets
    03 FGSM and PGD                   attacks (project, ascent_step, random_init, fgsm, pgd, AttackConfig),
                                      evaluation (evaluate, epsilon_sweep, gradient_masking_checks), interop
    04 adversarial training, MNIST    training (fit, adversarial_fit, AdversarialTrainingConfig, curriculum),
                                      evaluation (robustness_ladder), zoo (robust_model)
    05 adversarial training, CIFAR-10 the same, zoo.standard_model, and leaderboard (RobustBench's entries)
    06 input sanitization             sanitization (squeezers, detectors, threshold_for_fpr, autoencoder,
                                      BPDA and detector-aware attacks), interop.carlini_wagner
    06b poisoning and backdoors       poisoning (triggers, poisoned sets, spectral signatures, activation
                                      clustering, Deep Partition Aggregation and its certificate)
    07 randomized smoothing           certify (Smooth, certify_dataset, noise_augment)
    08 interval bound propagation     certify (interval_bounds, verified, ibp_fit)
    08b convex relaxation             certify (crown_bounds, alpha_crown_margin_lower_bounds, lp / exact margins,
                                      verified_by, bab_verify)
    09 interview preparation          interview (question bank, SelfQuiz)
    exercises (every lesson)          checks (one submodule per topic)

Projects
    p1 harden a CIFAR-10 model with ART   interop (art_classifier), training, zoo
    p2 layered defense for a text API     text
    p3 certified fraud model, CI gate     fraud (data, model, gate: ``python -m course_utils.gate``)
    p4 secured image API                  serving (``python -m course_utils.serving``)

Shared across lessons: ``attacks.AttackConfig`` (a threat model as a value), ``training.fit`` (the one
training loop, with a loss hook), ``training.load_model_file`` (the one safe model loader),
``sanitization.threshold_for_fpr`` (the one detector-threshold rule), ``zoo`` (the cached models).
Nothing here touches CUDA at import time.
"""

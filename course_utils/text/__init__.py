"""Text-side tools for the sentiment-API project (notebooks/projects/p2_sentiment_api_layered_defense).

Small modules, each readable in one sitting:

- ``vocab``: ``tokenize``, ``Vocab`` (word <-> id, ``encode`` to a padded (B, L) id tensor).
- ``model``: ``BagOfWordsClassifier`` (embedding mean -> MLP), ``train_text_model``, ``predict_proba``.
- ``wordnet``: ``load_wordnet_synonyms`` (Debian ``wordnet-base`` files or ``nltk.download``).
- ``attacks``: typo and synonym candidates, ``greedy_attack`` under a budget of edited words.
- ``sanitize``: ``SpellRepair`` (pyspellchecker) and ``OODDetector`` (sentence-embedding similarity).
- ``ibp``: interval bounds over word substitutions (Jia et al. 2019; Huang et al. 2019), certified training.
- ``monitoring``: ``RequestMonitor`` (prometheus_client counters and a request log).
- ``pipeline``: ``DefendedPipeline``: text in -> label, confidence, flags, certified.
- ``experiment``: ``evaluate_system``, one row of the project's summary table (notebook and benchmark).

Heavy optional libraries (nltk, pyspellchecker, sentence-transformers) are imported only when used.
"""

"""The offline ELMo: an ELMo-architecture bidirectional language model, trained on the training split's text.

Three concerns kept apart, as in bilm-tf: :mod:`.vocab` (character ids and the word vocabulary), :mod:`.model`
(the Keras graph, written with ``keras.ops`` only so it also runs on the JAX backend), :mod:`.pretrain` (the training
loop) and :mod:`.export` (a SavedModel with the TF-Hub ELMo ``tokens`` signature).
"""

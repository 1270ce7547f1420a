"""Special tokens: the single place where their strings are defined.

InternVL2.5 checkpoints already hold the image tokens (`<img>`, `</img>`, `<IMG_CONTEXT>`, ids
151665-151667 in the real tokenizer). The grounding tokens below are added once by the MLLM wrapper.
"""
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IMAGE_PLACEHOLDER = "<image>"  # in conversation text; expanded into IMG_START + IMG_CONTEXT*n + IMG_END

SEG = "[SEG]"
PHRASE_START = "<p>"
PHRASE_END = "</p>"
VP_START = "<vp>"
VP_END = "</vp>"

# Added to the tokenizer (exactly once) by InternVLMLLM.add_grounding_tokens.
GROUNDING_TOKENS = (SEG, PHRASE_START, PHRASE_END, VP_START, VP_END)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

// Byte-level BPE tokenizer (issue 3).

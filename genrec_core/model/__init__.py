"""TIGER-style generative recommender: SID vocabulary, prefix trie and T5 model."""

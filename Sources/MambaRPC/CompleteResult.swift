public struct CompleteResult {}

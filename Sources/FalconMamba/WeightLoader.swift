/// Looks up the tensors the model needs and checks each against the shape config.json implies.
struct WeightLoader {
    let checkpoint: Checkpoint

    func view(_ name: String, shape: [Int]) throws(CheckpointError) -> TensorView {
        let view = try checkpoint.tensor(name)
        guard view.shape == shape else {
            throw .shapeMismatch(path: view.path, tensor: name, expected: shape, actual: view.shape)
        }
        return view
    }

    func floats(_ name: String, shape: [Int]) throws(CheckpointError) -> [Float] {
        try view(name, shape: shape).floats()
    }

    func linear(_ name: String, rows: Int, cols: Int) throws(CheckpointError) -> Linear {
        let linear = try Linear.load(name, from: checkpoint)
        guard linear.rows == rows, linear.cols == cols else {
            throw .shapeMismatch(path: try checkpoint.tensor(name).path, tensor: name,
                                 expected: [rows, cols], actual: [linear.rows, linear.cols])
        }
        return linear
    }
}

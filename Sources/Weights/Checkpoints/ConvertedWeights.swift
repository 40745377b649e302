import Compute

/// How one diffusers tensor is made from a checkpoint tensor. Renames cost nothing; the others are
/// computed when the tensor is read.
public enum TensorRecipe: Sendable, Equatable {
    /// The tensor as stored.
    case rename(String)
    /// Part `part` of `parts` equal row blocks (axis 0): OpenCLIP's fused `in_proj_weight` / `in_proj_bias`
    /// hold q, k and v stacked.
    case rows(String, part: Int, parts: Int)
    /// A 1x1 convolution kernel `[out, in, 1, 1]` (or `[out, in, 1]`) as a linear weight `[out, in]`: the
    /// original VAE attention uses convolutions where diffusers uses linear layers. A tensor already
    /// stored as `[out, in]` is taken as it is.
    case squeezeConv(String)
    /// The transpose of a matrix: OpenCLIP applies `text_projection` as `x @ P`, a Linear stores `P^T`.
    case transpose(String)

    /// The checkpoint tensor this recipe reads.
    public var source: String {
        switch self {
        case .rename(let name), .rows(let name, _, _), .squeezeConv(let name), .transpose(let name): return name
        }
    }
}

/// A component of a checkpoint seen under its diffusers names: a `WeightSource` over another source and
/// a table diffusers name -> recipe. Nothing is read until a tensor is asked for.
public struct ConvertedWeights: WeightSource {
    public let base: any WeightSource
    /// Diffusers name -> how to make the tensor from `base`.
    public let recipes: [String: TensorRecipe]
    /// The component (`unet`, `vae`, `text_encoder`, `text_encoder_2`), for messages.
    public let component: String
    public let names: [String]

    public init(base: any WeightSource, recipes: [String: TensorRecipe], component: String) {
        self.base = base
        self.recipes = recipes
        self.component = component
        self.names = recipes.keys.sorted()
    }

    public var sourceDescription: String { "\(base.sourceDescription) (\(component), converted from the original layout)" }

    public func contains(_ name: String) -> Bool { recipes[name] != nil }

    public func recipe(for name: String) throws -> TensorRecipe {
        guard let recipe = recipes[name] else {
            throw WeightsError.tensorNotFound(source: sourceDescription, tensor: name)
        }
        return recipe
    }

    public func shape(of name: String) throws -> [Int] {
        let recipe = try recipe(for: name)
        return try Self.convertedShape(recipe, stored: base.shape(of: recipe.source), source: base.sourceDescription)
    }

    public func tensor(_ name: String) throws -> Tensor {
        let recipe = try recipe(for: name)
        let stored = try base.tensor(recipe.source)
        let shape = try Self.convertedShape(recipe, stored: stored.shape, source: base.sourceDescription)
        switch recipe {
        case .rename:
            return stored
        case .rows(_, let part, _):
            return slice(stored, axis: 0, (part * shape[0])..<((part + 1) * shape[0]))
        case .squeezeConv:
            return stored.reshaped(shape)
        case .transpose:
            return permute(stored, [1, 0])
        }
    }

    /// The shape a recipe produces from a stored shape, or an error saying why it cannot apply.
    static func convertedShape(_ recipe: TensorRecipe, stored: [Int], source: String) throws -> [Int] {
        func fail(_ detail: String) -> CheckpointError {
            .cannotConvert(path: source, tensor: recipe.source, detail: detail)
        }
        switch recipe {
        case .rename:
            return stored
        case .rows(_, _, let parts):
            guard let rows = stored.first, rows % parts == 0 else {
                throw fail("shape \(stored) cannot be split into \(parts) equal row blocks")
            }
            return [rows / parts] + stored.dropFirst()
        case .squeezeConv:
            guard stored.count >= 2, stored.dropFirst(2).allSatisfy({ $0 == 1 }) else {
                throw fail("shape \(stored) is not a 1x1 convolution kernel [out, in, 1, 1] or a matrix [out, in]")
            }
            return Array(stored.prefix(2))
        case .transpose:
            guard stored.count == 2 else { throw fail("shape \(stored) is not a matrix") }
            return [stored[1], stored[0]]
        }
    }
}

/// The result of converting one component's keys: what each diffusers tensor is made of, and what was
/// left over.
public struct KeyConversion: Sendable, Equatable {
    /// Diffusers name -> recipe over the component's keys (as given to the conversion, prefix removed).
    public var recipes: [String: TensorRecipe]
    /// Keys no rule matched: tensors this library does not understand (reported, not loaded).
    public var unconverted: [String]
    /// Keys known to be unused by the diffusers model (buffers, the OpenCLIP layer SD 2.x skips, ...).
    public var ignored: [String]

    public init(recipes: [String: TensorRecipe] = [:], unconverted: [String] = [], ignored: [String] = []) {
        self.recipes = recipes
        self.unconverted = unconverted
        self.ignored = ignored
    }
}

/// A dotted name split into the module path and the parameter (`weight`, `bias`, ...).
struct DottedName {
    let parts: [Substring]

    init(_ name: String) { parts = name.split(separator: ".", omittingEmptySubsequences: false) }

    /// Parts `from..<count` joined.
    func joined(from start: Int) -> String { parts[start...].joined(separator: ".") }

    func int(at index: Int) -> Int? {
        guard index < parts.count, let value = Int(parts[index]), value >= 0, String(value) == parts[index] else {
            return nil
        }
        return value
    }
}

/// `module.param` -> (module, param), for table lookups keyed by module path.
func splitParameter(_ key: String) -> (module: String, parameter: String)? {
    guard let dot = key.lastIndex(of: ".") else { return nil }
    return (String(key[..<dot]), String(key[key.index(after: dot)...]))
}

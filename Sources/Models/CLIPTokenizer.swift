import Foundation

/// CLIP's byte-level BPE tokenizer, id for id what transformers' `CLIPTokenizer` produces from the same
/// `tokenizer/` folder.
///
/// The reference is the `tokenizers`-backed tokenizer: transformers 5.x's only `CLIPTokenizer`, and
/// `CLIPTokenizerFast` in 4.x (identical ids on every golden prompt). transformers 4.x's slow Python tokenizer
/// without ftfy cleans text differently (drops control characters, splits CJK characters apart, lower-cases a
/// final sigma to "ς") and so differs on such prompts; plain ASCII/Latin prompts agree with all three.
///
/// Text is split on added tokens first (the special tokens: `<|startoftext|>`, `<|endoftext|>` and the pad
/// token — SD 2.x pads with `!`, so there a `!` in a prompt becomes id 0, exactly as in transformers), the rest
/// is normalised and pre-tokenised (`CLIPPreTokenizer`), and every piece is BPE-merged with `</w>` marking its
/// end. Thread-safe: one instance serves concurrent requests.
public final class CLIPTokenizer: @unchecked Sendable {
    /// `<|startoftext|>`'s id (49406 in CLIP's vocabulary).
    public let bosTokenID: Int
    /// `<|endoftext|>`'s id (49407).
    public let eosTokenID: Int
    /// The padding id: `<|endoftext|>` for SD 1.x, `!` (0) for SD 2.x and SDXL's second tokenizer.
    public let padTokenID: Int
    public let unknownTokenID: Int
    /// `model_max_length` from `tokenizer_config.json` (77 for every Stable Diffusion tokenizer); 77 when the
    /// file leaves it out or gives transformers' "no limit" placeholder.
    public let modelMaxLength: Int
    /// The added tokens, matched in text before BPE.
    public let addedTokens: [CLIPAddedToken]
    /// Each added token's text as matched: raw for `normalized == false`, normalised otherwise.
    let addedTokenPatterns: [[Unicode.Scalar]]

    let vocabulary: [String: Int]
    /// Token strings by id (nil where the vocabulary has a gap).
    let tokensByID: [String?]
    /// Merge rules keyed by the pair of symbol ids: (rank, id of the merged symbol).
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// The id of each byte as a lone symbol, and as a word's last symbol (with `</w>`).
    let byteSymbolIDs: [Int32]
    let finalByteSymbolIDs: [Int32]

    private let cacheLock = NSLock()
    private var cache: [[UInt8]: [Int]] = [:]
    static let cacheCapacity = 10_000

    /// The suffix that marks the last symbol of a word.
    public static let endOfWordSuffix = "</w>"

    /// Reads `vocab.json`, `merges.txt` and, when present, `tokenizer_config.json`, `special_tokens_map.json`
    /// and `tokenizer.json` (for its added tokens; also for vocabulary and merges when the two files are absent).
    public convenience init(folder: URL) throws {
        try self.init(files: CLIPTokenizerFiles(folder: folder))
    }

    /// The tokenizer in `folder` with another pad token: single-file checkpoints carry no tokenizer, and SD 2.x
    /// and SDXL's second encoder pad with `!` where the shared CLIP vocabulary's files say `<|endoftext|>`.
    public convenience init(folder: URL, padToken: String) throws {
        var files = try CLIPTokenizerFiles(folder: folder)
        if files.padToken.content != padToken {
            files.padToken = CLIPAddedToken(
                content: padToken, id: -1, normalized: false, lstrip: false, rstrip: false, singleWord: false, special: true)
        }
        try self.init(files: files)
    }

    init(files: CLIPTokenizerFiles) throws {
        let vocabulary = files.vocabulary
        self.vocabulary = vocabulary
        let largestID = vocabulary.values.max() ?? -1
        var tokensByID = [String?](repeating: nil, count: largestID + 1)
        for (token, id) in vocabulary where id >= 0 { tokensByID[id] = token }

        func id(of token: String, role: String) throws -> Int {
            if let id = vocabulary[token] { return id }
            if let declared = files.addedTokens.first(where: { $0.content == token })?.id { return declared }
            throw CLIPTokenizerError.unknownToken(token: token, role: role, path: files.vocabularySource)
        }
        bosTokenID = try id(of: files.bosToken.content, role: "bos_token")
        eosTokenID = try id(of: files.eosToken.content, role: "eos_token")
        padTokenID = try id(of: files.padToken.content, role: "pad_token")
        unknownTokenID = try id(of: files.unknownToken.content, role: "unk_token")
        modelMaxLength = files.modelMaxLength

        // Added tokens: the files' own list, then the special tokens it does not already define.
        var added: [CLIPAddedToken] = []
        for token in files.addedTokens + [files.bosToken, files.eosToken, files.unknownToken, files.padToken]
        where !added.contains(where: { $0.content == token.content }) {
            var resolved = token
            resolved.id = try id(of: token.content, role: "added token")
            added.append(resolved)
        }
        addedTokens = added
        addedTokenPatterns = added.map { token in
            token.normalized ? CLIPPreTokenizer.normalize(Substring(token.content)) : Array(token.content.unicodeScalars)
        }
        for token in added where token.id >= tokensByID.count {
            tokensByID += [String?](repeating: nil, count: token.id - tokensByID.count + 1)
        }
        for token in added { tokensByID[token.id] = token.content }
        self.tokensByID = tokensByID

        let symbolCount = vocabulary.count
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        merges.reserveCapacity(files.merges.count)
        for (rank, pair) in files.merges.enumerated() {
            guard let first = vocabulary[pair.first], let second = vocabulary[pair.second],
                let merged = vocabulary[pair.first + pair.second]
            else {
                throw CLIPTokenizerError.invalidFile(
                    path: files.mergesSource,
                    reason: "merge \(rank + 1) '\(pair.first) \(pair.second)' uses a token missing from the vocabulary "
                        + "(\(symbolCount) entries); the vocabulary and merges come from different tokenizers")
            }
            let key = Self.pairKey(Int32(first), Int32(second))
            if merges[key] == nil { merges[key] = (Int32(rank), Int32(merged)) }
        }
        self.merges = merges

        let unknown = Int32(unknownTokenID)
        let alphabet = CLIPPreTokenizer.byteToScalar.map { String(Character($0)) }
        byteSymbolIDs = alphabet.map { vocabulary[$0].map(Int32.init) ?? unknown }
        finalByteSymbolIDs = alphabet.map { vocabulary[$0 + Self.endOfWordSuffix].map(Int32.init) ?? unknown }
    }

    /// Number of ids (the vocabulary plus added tokens outside it).
    public var vocabularySize: Int { tokensByID.count }

    /// The id of a vocabulary entry or added token spelled in the byte-level alphabet (`"a</w>"`, `",</w>"`,
    /// `"<|endoftext|>"`).
    public func id(of token: String) -> Int? {
        vocabulary[token] ?? addedTokens.first(where: { $0.content == token })?.id
    }

    /// The vocabulary entry for `id`, in the byte-level alphabet.
    public func token(of id: Int) -> String? {
        id >= 0 && id < tokensByID.count ? tokensByID[id] : nil
    }

    /// `text` after CLIP's normalisation (NFC, whitespace runs to one space, lower-case), before any splitting.
    public static func normalize(_ text: String) -> String {
        String(String.UnicodeScalarView(CLIPPreTokenizer.normalize(Substring(text))))
    }

    /// The pieces the pre-tokenizer cuts already-normalised text into, each becoming one BPE word: what the
    /// `tokenizers` pre-tokenizer's `pre_tokenize_str` returns, without the byte-level spelling.
    public static func preTokenize(_ normalizedText: String) -> [String] {
        CLIPPreTokenizer.split(Array(normalizedText.unicodeScalars)[...]).map { String(String.UnicodeScalarView($0)) }
    }

    // MARK: - Encoding

    /// The ids of `text` without BOS/EOS, padding or truncation (`tokenizer(text, add_special_tokens=False)`).
    /// Special tokens written in the text keep their ids. A1111-style prompt weighting builds its chunks from this.
    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        let scalars = Array(text.unicodeScalars)
        for raw in splitOnAddedTokens(scalars[...], normalized: false) {
            switch raw {
            case .added(let id): ids.append(id)
            case .text(let piece):
                let normalized = CLIPPreTokenizer.normalize(Substring(String(String.UnicodeScalarView(piece))))
                for part in splitOnAddedTokens(normalized[...], normalized: true) {
                    switch part {
                    case .added(let id): ids.append(id)
                    case .text(let text):
                        for word in CLIPPreTokenizer.split(text) { ids.append(contentsOf: bpe(word)) }
                    }
                }
            }
        }
        return ids
    }

    /// `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True).input_ids`: BOS, at most
    /// `maxLength - 2` tokens, EOS, then padding. `maxLength` defaults to `modelMaxLength`.
    public func encode(_ text: String, maxLength: Int? = nil) -> [Int] {
        wrap(tokenize(text), maxLength: maxLength)
    }

    /// BOS + `tokens` (truncated to `maxLength - 2`) + EOS, padded to `maxLength` with the pad id: what `encode`
    /// does after tokenising, for callers that assemble token chunks themselves.
    public func wrap(_ tokens: [Int], maxLength: Int? = nil) -> [Int] {
        let length = maxLength ?? modelMaxLength
        precondition(length >= 2, "a CLIP token sequence needs room for BOS and EOS, got maxLength \(length)")
        var ids = [bosTokenID]
        ids.reserveCapacity(length)
        ids.append(contentsOf: tokens.prefix(length - 2))
        ids.append(eosTokenID)
        ids.append(contentsOf: repeatElement(padTokenID, count: length - ids.count))
        return ids
    }

    /// Text for `ids` as transformers' `decode` gives it: byte-level decoding, `</w>` as a space, trimmed;
    /// special tokens left out unless asked for.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if let added = addedTokens.first(where: { $0.id == id }) {
                if !(skipSpecialTokens && added.special) { bytes.append(contentsOf: Array(added.content.utf8)) }
                continue
            }
            guard var token = token(of: id) else { continue }
            let endsWord = token.hasSuffix(Self.endOfWordSuffix)
            if endsWord { token.removeLast(Self.endOfWordSuffix.count) }
            for scalar in token.unicodeScalars {
                if let byte = CLIPPreTokenizer.scalarToByte[scalar] { bytes.append(byte) }
            }
            if endsWord { bytes.append(0x20) }
        }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    // MARK: - Added tokens

    enum Segment {
        case added(Int)
        case text(ArraySlice<Unicode.Scalar>)
    }

    /// Splits `text` on the added tokens whose `normalized` flag equals `normalized`: leftmost-longest
    /// non-overlapping matches (the `tokenizers` added vocabulary's Aho-Corasick), then the `single_word`,
    /// `lstrip` and `rstrip` rules.
    func splitOnAddedTokens(_ text: ArraySlice<Unicode.Scalar>, normalized: Bool) -> [Segment] {
        let indices = addedTokens.indices.filter { addedTokens[$0].normalized == normalized }
        guard !text.isEmpty else { return [] }
        guard !indices.isEmpty else { return [.text(text)] }
        let candidates = indices.map { addedTokens[$0] }
        let patterns = indices.map { addedTokenPatterns[$0] }
        var segments: [Segment] = []
        var cursor = text.startIndex  // start of the text not yet emitted
        var i = text.startIndex
        while i < text.endIndex {
            var best: (index: Int, length: Int)?
            for (index, pattern) in patterns.enumerated() where !pattern.isEmpty && text[i...].starts(with: pattern) {
                if pattern.count > (best?.length ?? 0) { best = (index, pattern.count) }
            }
            guard let match = best else {
                i += 1
                continue
            }
            let token = candidates[match.index]
            var start = i, end = i + match.length
            if token.singleWord
                && ((start > text.startIndex && Self.isWordCharacter(text[start - 1]))
                    || (end < text.endIndex && Self.isWordCharacter(text[end])))
            {
                i = end
                continue
            }
            if token.lstrip {
                while start > cursor && text[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.rstrip {
                while end < text.endIndex && text[end].properties.isWhitespace { end += 1 }
            }
            if start > cursor { segments.append(.text(text[cursor..<start])) }
            segments.append(.added(token.id))
            cursor = end
            i = end
        }
        if cursor < text.endIndex { segments.append(.text(text[cursor...])) }
        return segments
    }

    /// Rust's `char::is_alphanumeric() || c == '_'`, the `single_word` boundary test.
    private static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || scalar.properties.isAlphabetic || CLIPPreTokenizer.isNumber(scalar)
    }

    // MARK: - BPE

    @inline(__always) static func pairKey(_ first: Int32, _ second: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: first)) << 32 | UInt64(UInt32(bitPattern: second))
    }

    /// BPE ids of one pre-tokenised piece.
    func bpe(_ piece: ArraySlice<Unicode.Scalar>) -> [Int] {
        var bytes: [UInt8] = []
        for scalar in piece { bytes.append(contentsOf: Array(String(Character(scalar)).utf8)) }
        cacheLock.lock()
        let cached = cache[bytes]
        cacheLock.unlock()
        if let cached { return cached }
        let ids = merge(bytes)
        cacheLock.lock()
        if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = ids
        cacheLock.unlock()
        return ids
    }

    /// Starting from one symbol per byte (the last one with `</w>`), repeatedly merges every occurrence of the
    /// lowest-ranked adjacent pair, left to right, until no pair has a merge rule.
    func merge(_ bytes: [UInt8]) -> [Int] {
        guard let last = bytes.last else { return [] }
        var symbols = bytes.dropLast().map { byteSymbolIDs[Int($0)] }
        symbols.append(finalByteSymbolIDs[Int(last)])
        while symbols.count > 1 {
            var best: (rank: Int32, first: Int32, second: Int32, merged: Int32)?
            for i in 0..<(symbols.count - 1) {
                if let rule = merges[Self.pairKey(symbols[i], symbols[i + 1])], rule.rank < (best?.rank ?? .max) {
                    best = (rule.rank, symbols[i], symbols[i + 1], rule.merged)
                }
            }
            guard let best else { break }
            var next: [Int32] = []
            next.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == best.first && symbols[i + 1] == best.second {
                    next.append(best.merged)
                    i += 2
                } else {
                    next.append(symbols[i])
                    i += 1
                }
            }
            symbols = next
        }
        return symbols.map(Int.init)
    }
}

/// A token matched in the text before BPE (transformers' `AddedToken`).
public struct CLIPAddedToken: Sendable, Equatable {
    public var content: String
    /// The id; resolved from the vocabulary when the files do not give one.
    public var id: Int
    /// Matched in normalised (lower-cased) text instead of the raw text.
    public var normalized: Bool
    /// Absorbs whitespace on its left / right.
    public var lstrip: Bool
    public var rstrip: Bool
    /// Only matches when not inside a word.
    public var singleWord: Bool
    public var special: Bool

    public init(
        content: String, id: Int = -1, normalized: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
        singleWord: Bool = false, special: Bool = true
    ) {
        self.content = content
        self.id = id
        self.normalized = normalized
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.special = special
    }
}

/// Why a tokenizer folder could not be read.
public enum CLIPTokenizerError: Error, CustomStringConvertible, Equatable {
    case missingFile(path: String, what: String)
    case unreadableFile(path: String, reason: String)
    case invalidFile(path: String, reason: String)
    case unknownToken(token: String, role: String, path: String)

    public var description: String {
        switch self {
        case .missingFile(let path, let what):
            "CLIP tokenizer: \(what) not found at \(path); point at a diffusers `tokenizer/` folder with vocab.json and merges.txt"
        case .unreadableFile(let path, let reason):
            "CLIP tokenizer: cannot read \(path): \(reason)"
        case .invalidFile(let path, let reason):
            "CLIP tokenizer: \(path) is not a valid tokenizer file: \(reason)"
        case .unknownToken(let token, let role, let path):
            "CLIP tokenizer: \(role) '\(token)' is neither in \(path) nor among the added tokens; fix the tokenizer config"
        }
    }
}

/// The contents of a `tokenizer/` folder, resolved as transformers 5 resolves them: the special tokens from
/// `tokenizer_config.json`, overridden by `special_tokens_map.json` unless the config lists
/// `added_tokens_decoder`; added tokens from `added_tokens_decoder`, else from `tokenizer.json`; an added
/// token's flags win over a special token's own for the same text.
struct CLIPTokenizerFiles {
    var vocabulary: [String: Int]
    var vocabularySource: String
    var merges: [(first: String, second: String)]
    var mergesSource: String
    var bosToken: CLIPAddedToken
    var eosToken: CLIPAddedToken
    var unknownToken: CLIPAddedToken
    var padToken: CLIPAddedToken
    /// Added tokens the files declare with their ids.
    var addedTokens: [CLIPAddedToken]
    var modelMaxLength: Int

    /// CLIP's sequence length, used when `model_max_length` is absent or transformers' "no limit" value.
    static let defaultModelMaxLength = 77
    /// Token ids must lie below this (they are stored as `Int32` in the merge table; real vocabularies have
    /// well under a million entries, so a larger id means a corrupt file).
    static let idLimit = 1 << 24

    init(folder: URL) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIPTokenizerError.missingFile(path: folder.path, what: "tokenizer folder")
        }
        let vocabularyURL = folder.appendingPathComponent("vocab.json")
        let mergesURL = folder.appendingPathComponent("merges.txt")
        let tokenizerJSONURL = folder.appendingPathComponent("tokenizer.json")
        let config = try Self.jsonObject(at: folder.appendingPathComponent("tokenizer_config.json")) ?? [:]
        let specialTokensMap = try Self.jsonObject(at: folder.appendingPathComponent("special_tokens_map.json"))
        var tokenizerJSONCache: [String: Any]??
        func tokenizerJSON() throws -> [String: Any]? {
            if let cached = tokenizerJSONCache { return cached }
            let parsed = try Self.jsonObject(at: tokenizerJSONURL)
            tokenizerJSONCache = .some(parsed)
            return parsed
        }

        // Vocabulary and merges: the two classic files, else the BPE model inside tokenizer.json.
        if Self.exists(vocabularyURL) {
            vocabulary = try Self.readVocabulary(vocabularyURL)
            vocabularySource = vocabularyURL.path
        } else if let model = try tokenizerJSON()?["model"] as? [String: Any], let vocab = model["vocab"] {
            vocabulary = try Self.vocabulary(from: vocab, path: tokenizerJSONURL.path)
            vocabularySource = tokenizerJSONURL.path
        } else {
            throw CLIPTokenizerError.missingFile(path: vocabularyURL.path, what: "vocab.json")
        }
        if Self.exists(mergesURL) {
            merges = try Self.readMerges(mergesURL)
            mergesSource = mergesURL.path
        } else if let model = try tokenizerJSON()?["model"] as? [String: Any], let list = model["merges"] {
            merges = try Self.merges(from: list, path: tokenizerJSONURL.path)
            mergesSource = tokenizerJSONURL.path
        } else {
            throw CLIPTokenizerError.missingFile(path: mergesURL.path, what: "merges.txt")
        }

        let configPath = folder.appendingPathComponent("tokenizer_config.json").path
        let declaredTokens: [CLIPAddedToken]
        if let decoder = config["added_tokens_decoder"] {
            guard let entries = decoder as? [String: Any] else {
                throw CLIPTokenizerError.invalidFile(path: configPath, reason: "added_tokens_decoder is not an object")
            }
            declaredTokens = try entries.map { key, value in
                guard let id = Int(key), id >= 0 else {
                    throw CLIPTokenizerError.invalidFile(
                        path: configPath, reason: "added_tokens_decoder key '\(key)' is not an id")
                }
                return try Self.addedToken(value, id: id, specialByDefault: false, path: configPath)
            }.sorted { $0.id < $1.id }
        } else if let list = try tokenizerJSON()?["added_tokens"] {
            guard let entries = list as? [[String: Any]] else {
                throw CLIPTokenizerError.invalidFile(path: tokenizerJSONURL.path, reason: "added_tokens is not a list of objects")
            }
            declaredTokens = try entries.map { entry in
                guard let id = (entry["id"] as? NSNumber)?.intValue, id >= 0 else {
                    throw CLIPTokenizerError.invalidFile(path: tokenizerJSONURL.path, reason: "an added token has no valid id")
                }
                return try Self.addedToken(entry, id: id, specialByDefault: false, path: tokenizerJSONURL.path)
            }
        } else {
            declaredTokens = []
        }
        addedTokens = declaredTokens

        let overrides = config["added_tokens_decoder"] == nil ? specialTokensMap ?? [:] : [:]
        func role(_ key: String, default content: String) throws -> CLIPAddedToken {
            let value = overrides[key] ?? config[key]
            var token: CLIPAddedToken
            if let value, !(value is NSNull) {
                token = try Self.addedToken(value, id: -1, specialByDefault: true, path: configPath)
            } else {
                token = CLIPAddedToken(content: content)
            }
            if let declared = declaredTokens.first(where: { $0.content == token.content }) { token = declared }
            token.special = true
            return token
        }
        bosToken = try role("bos_token", default: "<|startoftext|>")
        eosToken = try role("eos_token", default: "<|endoftext|>")
        unknownToken = try role("unk_token", default: "<|endoftext|>")
        padToken = try role("pad_token", default: "<|endoftext|>")

        if let number = config["model_max_length"] as? NSNumber, number.doubleValue >= 2, number.doubleValue <= 1_000_000 {
            modelMaxLength = number.intValue
        } else {
            modelMaxLength = Self.defaultModelMaxLength
        }
    }

    private static func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

    private static func contents(of url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw CLIPTokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
    }

    /// A JSON object file, or nil when the file does not exist.
    private static func jsonObject(at url: URL) throws -> [String: Any]? {
        guard exists(url) else { return nil }
        let data = try contents(of: url)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw CLIPTokenizerError.invalidFile(path: url.path, reason: "not valid JSON (\(error.localizedDescription))")
        }
        guard let object = parsed as? [String: Any] else {
            throw CLIPTokenizerError.invalidFile(path: url.path, reason: "expected a JSON object at the top level")
        }
        return object
    }

    private static func readVocabulary(_ url: URL) throws -> [String: Int] {
        let data = try contents(of: url)
        do {
            return try checked(JSONDecoder().decode([String: Int].self, from: data), path: url.path)
        } catch let error as CLIPTokenizerError {
            throw error
        } catch {
            throw CLIPTokenizerError.invalidFile(path: url.path, reason: "expected a JSON object of token -> id (\(error))")
        }
    }

    private static func vocabulary(from value: Any, path: String) throws -> [String: Int] {
        guard let entries = value as? [String: Any], !entries.isEmpty else {
            throw CLIPTokenizerError.invalidFile(path: path, reason: "model.vocab is not a non-empty object")
        }
        var vocabulary: [String: Int] = [:]
        for (token, id) in entries {
            guard let number = id as? NSNumber else {
                throw CLIPTokenizerError.invalidFile(path: path, reason: "model.vocab entry '\(token)' has no integer id")
            }
            vocabulary[token] = number.intValue
        }
        return try checked(vocabulary, path: path)
    }

    /// A non-empty vocabulary whose ids are all in `0..<idLimit`.
    private static func checked(_ vocabulary: [String: Int], path: String) throws -> [String: Int] {
        guard !vocabulary.isEmpty else { throw CLIPTokenizerError.invalidFile(path: path, reason: "the vocabulary is empty") }
        if let (token, id) = vocabulary.first(where: { $0.value < 0 || $0.value >= idLimit }) {
            throw CLIPTokenizerError.invalidFile(path: path, reason: "token '\(token)' has id \(id), outside 0..<\(idLimit)")
        }
        return vocabulary
    }

    /// `merges.txt`: an optional `#version` line, then one `first second` pair per line, highest priority first.
    private static func readMerges(_ url: URL) throws -> [(first: String, second: String)] {
        guard let text = String(data: try contents(of: url), encoding: .utf8) else {
            throw CLIPTokenizerError.invalidFile(path: url.path, reason: "not UTF-8 text")
        }
        var merges: [(first: String, second: String)] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.isEmpty || (index == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw CLIPTokenizerError.invalidFile(
                    path: url.path, reason: "line \(index + 1) '\(line.prefix(80))' is not two tokens separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        guard !merges.isEmpty else { throw CLIPTokenizerError.invalidFile(path: url.path, reason: "no merges") }
        return merges
    }

    /// tokenizer.json's `model.merges`: `"first second"` strings (older files) or `[first, second]` pairs.
    private static func merges(from value: Any, path: String) throws -> [(first: String, second: String)] {
        guard let list = value as? [Any] else {
            throw CLIPTokenizerError.invalidFile(path: path, reason: "model.merges is not a list")
        }
        return try list.enumerated().map { index, entry in
            if let pair = entry as? [String], pair.count == 2 { return (pair[0], pair[1]) }
            if let text = entry as? String {
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2 { return (String(parts[0]), String(parts[1])) }
            }
            throw CLIPTokenizerError.invalidFile(path: path, reason: "model.merges entry \(index) is not a pair of tokens")
        }
    }

    /// A special/added token written as a plain string or as an `AddedToken` object.
    private static func addedToken(_ value: Any, id: Int, specialByDefault: Bool, path: String) throws -> CLIPAddedToken {
        if let content = value as? String {
            guard id < idLimit else {
                throw CLIPTokenizerError.invalidFile(
                    path: path, reason: "added token '\(content)' has id \(id), outside 0..<\(idLimit)")
            }
            return CLIPAddedToken(content: content, id: id, special: specialByDefault)
        }
        guard let object = value as? [String: Any], let content = object["content"] as? String else {
            throw CLIPTokenizerError.invalidFile(
                path: path, reason: "a special token is neither a string nor an object with 'content'")
        }
        guard id < idLimit else {
            throw CLIPTokenizerError.invalidFile(
                path: path, reason: "added token '\(content)' has id \(id), outside 0..<\(idLimit)")
        }
        func flag(_ key: String, _ defaultValue: Bool) -> Bool { (object[key] as? NSNumber)?.boolValue ?? defaultValue }
        let special = flag("special", specialByDefault)
        return CLIPAddedToken(
            content: content, id: id, normalized: flag("normalized", !special), lstrip: flag("lstrip", false),
            rstrip: flag("rstrip", false), singleWord: flag("single_word", false), special: special)
    }
}

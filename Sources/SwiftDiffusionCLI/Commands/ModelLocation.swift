import Foundation
import Serving
import Weights

/// Where the embedded default model lives and how a `--model` argument is resolved.
enum ModelLocation {
    /// Folder name of the embedded default model under `models/`.
    static let embeddedName = "shapes-sd"

    /// The embedded model: `$SWIFTDIFFUSION_DEFAULT_MODEL`, else `models/shapes-sd` found by walking up from
    /// the executable (a build inside the repository) or from the working directory.
    static func embeddedModel() throws -> URL {
        if let override = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_DEFAULT_MODEL"], !override.isEmpty {
            return URL(fileURLWithPath: override)
        }
        // The executable's real location: a command found through PATH (the link install.sh makes) has only its
        // name in argv[0], so the kernel's record of the running binary comes first.
        var executables: [URL] = []
        if let running = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            executables.append(URL(fileURLWithPath: running))
        }
        if let path = Bundle.main.executablePath { executables.append(URL(fileURLWithPath: path)) }
        executables.append(URL(fileURLWithPath: CommandLine.arguments[0]))
        let starts =
            executables.map { $0.resolvingSymlinksInPath().deletingLastPathComponent() }
            + [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        for start in starts {
            var directory = start.standardizedFileURL
            for _ in 0..<8 {
                let candidate = directory.appendingPathComponent("models").appendingPathComponent(embeddedName)
                let markers = ["model_index.json", "tokenizer/vocab.json"]
                if markers.contains(where: { FileManager.default.fileExists(atPath: candidate.appendingPathComponent($0).path) }) {
                    return candidate
                }
                directory.deleteLastPathComponent()
            }
        }
        throw CLIError(
            "the embedded model (models/\(embeddedName)) was not found next to the executable or the working directory; "
                + "pass --model or set SWIFTDIFFUSION_DEFAULT_MODEL")
    }

    /// The models `serve` finds: the `--models` folders (each must exist) and the embedded family beside the
    /// embedded model. `swiftdiffusion worker` finds the same.
    static func repository(folders: [String]) throws -> ModelRepository {
        // A models folder that is not there is a mistake, not an empty registry.
        let roots = try folders.map { try InputPath.folder($0) }
        let embedded = try? embeddedModel().deletingLastPathComponent()
        return ModelRepository(roots: roots, embeddedModels: embedded)
    }

    /// `--model` if given (a diffusers folder or a .safetensors checkpoint), else the embedded model.
    static func resolve(_ argument: String?) throws -> URL {
        guard let argument else { return try embeddedModel() }
        return try InputPath.existing(argument)
    }
}

/// Paths given on the command line: a missing one is `no such file: PATH`, before any work starts.
enum InputPath {
    /// An existing file or folder (`~` expanded); `no such file: PATH` otherwise.
    static func existing(_ path: String) throws -> URL {
        let expanded = (path as NSString).expandingTildeInPath
        guard FileManager.default.fileExists(atPath: expanded) else { throw CLIError.noSuchFile(expanded) }
        return URL(fileURLWithPath: expanded)
    }

    /// An existing folder; `no such file: PATH` when missing, `not a folder: PATH` when it is a file.
    static func folder(_ path: String) throws -> URL {
        let url = try existing(path)
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
        guard isDirectory.boolValue else { throw CLIError("not a folder: \(url.path)") }
        return url
    }

    /// An output file: its folder is created if needed (`~` expanded).
    static func output(_ path: String) throws -> URL {
        let url = URL(fileURLWithPath: (path as NSString).expandingTildeInPath)
        let parent = url.deletingLastPathComponent()
        if !FileManager.default.fileExists(atPath: parent.path) {
            do {
                try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
            } catch {
                throw CLIError("cannot create the folder \(parent.path) for \(url.path)")
            }
        }
        return url
    }
}

/// Where state that outlives a command is kept (the server's job database): `$XDG_STATE_HOME/swiftdiffusion`,
/// by default `~/.local/state/swiftdiffusion` (the XDG base directory specification), never the working
/// directory.
enum StateDirectory {
    static func url(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        // The specification ignores a relative XDG_STATE_HOME.
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") {
            return URL(fileURLWithPath: state).appendingPathComponent("swiftdiffusion")
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? FileManager.default.homeDirectoryForCurrentUser.path
        return URL(fileURLWithPath: home).appendingPathComponent(".local/state/swiftdiffusion")
    }

    /// `<state directory>/jobs.sqlite`, creating the folder as needed.
    static func jobsDatabase() throws -> String {
        let folder = url()
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CLIError("cannot create the state folder \(folder.path) (set XDG_STATE_HOME or pass --database): \(error.localizedDescription)")
        }
        return folder.appendingPathComponent("jobs.sqlite").path
    }
}

/// An error whose message is printed as is, with exit code 1 (or the given code).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32

    init(_ message: String, exitCode: Int32 = 1) {
        self.description = message
        self.exitCode = exitCode
    }

    static func noSuchFile(_ path: String) -> CLIError { CLIError("no such file: \(path)") }

    /// Any error as a one-line message; a missing file, however the layer below reported it (Foundation's
    /// `NSCocoaErrorDomain` codes, POSIX `ENOENT`, the weights loader), is `no such file: PATH`.
    init(wrapping error: any Error) {
        if let error = error as? CLIError {
            self = error
        } else if let path = Self.missingPath(error) {
            self = .noSuchFile(path)
        } else {
            self.init("\(error)")
        }
    }

    /// The path of a "file not found" error, if `error` is one.
    static func missingPath(_ error: any Error) -> String? {
        if case .missingFile(let path, _) = error as? WeightsError { return path }
        let nsError = error as NSError
        let notFound =
            (nsError.domain == NSCocoaErrorDomain
                && [CocoaError.fileNoSuchFile.rawValue, CocoaError.fileReadNoSuchFile.rawValue].contains(nsError.code))
            || (nsError.domain == NSPOSIXErrorDomain && nsError.code == Int(ENOENT))
        guard notFound else { return nil }
        if let path = nsError.userInfo[NSFilePathErrorKey] as? String { return path }
        if let url = nsError.userInfo[NSURLErrorKey] as? URL { return url.path }
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError { return missingPath(underlying) }
        return "(unknown path)"
    }
}

import Foundation
import Hummingbird

/// The single-page web UI at `/` (static files bundled with the server, no build step).
struct WebPage {
    static let files: [String: String] = ["index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8"]

    func register(on router: Router<ServerRequestContext>) {
        router.get("/") { _, _ in try Self.serve("index.html") }
        for name in Self.files.keys {
            router.get("ui/\(name)") { _, _ in try Self.serve(name) }
        }
    }

    static func serve(_ name: String) throws -> Response {
        guard let type = files[name], let url = Bundle.module.url(forResource: "Resources/\(name)", withExtension: nil),
            let data = try? Data(contentsOf: url)
        else { throw APIError.notFound("no such page") }
        return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

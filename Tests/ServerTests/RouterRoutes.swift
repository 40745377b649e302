import Hummingbird

/// One route a router answers: method and path in OpenAPI's spelling (`GET /v1/images/jobs/{id}`).
struct RegisteredRoute: Hashable, Comparable, CustomStringConvertible {
    let method: String
    let path: String

    var description: String { "\(method) \(path)" }

    static func < (lhs: RegisteredRoute, rhs: RegisteredRoute) -> Bool { (lhs.path, lhs.method) < (rhs.path, rhs.method) }
}

/// The routes a Hummingbird router has registered.
///
/// Hummingbird 2 keeps its route trie internal, so this reads it by reflection: `Router.trie.root` is a tree of
/// nodes (`key`: one path element, `children`, `value`: the endpoint with its `methods`). If a Hummingbird
/// update renames those, `list` throws rather than returning an empty list that would make a test pass.
enum RouterRoutes {
    struct ReflectionError: Error, CustomStringConvertible {
        let description: String
    }

    static func list<Context>(_ router: Router<Context>) throws -> [RegisteredRoute] {
        guard let trie = child(router, "trie"), let root = child(trie, "root") else {
            throw ReflectionError(
                description: "Router has no trie.root any more; update RouterRoutes for this Hummingbird version")
        }
        var routes: [RegisteredRoute] = []
        try walk(root, path: [], into: &routes)
        guard !routes.isEmpty else { throw ReflectionError(description: "found no routes by reflection; update RouterRoutes") }
        return routes.sorted()
    }

    private static func walk(_ node: Any, path: [String], into routes: inout [RegisteredRoute]) throws {
        guard let key = child(node, "key"), let children = child(node, "children") as? [Any] else {
            throw ReflectionError(description: "a route trie node has no key/children; update RouterRoutes")
        }
        let element = "\(key)"
        let here = element == "!" ? path : path + [element]  // "!" is the root's null element
        if let value = child(node, "value"), let endpoint = Mirror(reflecting: value).children.first?.value {
            guard let methods = child(endpoint, "methods") else {
                throw ReflectionError(description: "an endpoint has no methods; update RouterRoutes")
            }
            for entry in Mirror(reflecting: methods).children {
                guard let method = Mirror(reflecting: entry.value).children.first?.value as? HTTPRequest.Method else {
                    throw ReflectionError(
                        description: "an endpoint's methods are not keyed by HTTPRequest.Method; update RouterRoutes")
                }
                routes.append(RegisteredRoute(method: method.rawValue, path: "/" + here.joined(separator: "/")))
            }
        }
        for next in children { try walk(next, path: here, into: &routes) }
    }

    private static func child(_ subject: Any, _ label: String) -> Any? {
        Mirror(reflecting: subject).children.first { $0.label == label }?.value
    }
}

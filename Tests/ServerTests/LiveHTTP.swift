import Dispatch
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Server
import Serving

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A server on a real TCP port (for what only a real connection shows: a client that goes away, a route that stays
/// responsive while others are busy), and a raw HTTP/1.1 client over blocking sockets. The blocking calls run on
/// their own threads, never on the cooperative pool the server in this process uses.
enum LiveHTTP {
    /// Runs `body` with the port of a live server on `engine`.
    static func withServer(
        engine: GenerationEngine, _ body: @escaping @Sendable (_ port: Int, _ client: any TestClientProtocol) async throws -> Void
    ) async throws {
        let router = ServerApplication.router(engine: engine, configuration: ServerConfiguration())
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), services: [engine], logger: logger)
        try await application.test(.live) { client in
            let port = try XCTUnwrapPort(client.port)
            try await body(port, client)
        }
    }

    private static func XCTUnwrapPort(_ port: Int?) throws -> Int {
        guard let port else { throw APITestError("the live test server has no port") }
        return port
    }

    /// Runs blocking work on a thread of its own.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    /// An open connection to 127.0.0.1:port.
    final class Connection: @unchecked Sendable {
        let descriptor: Int32

        init(port: Int) throws {
            #if canImport(Glibc)
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            #else
            descriptor = socket(AF_INET, SOCK_STREAM, 0)
            #endif
            guard descriptor >= 0 else { throw APITestError("socket() failed") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard result == 0 else {
                #if canImport(Glibc)
                _ = Glibc.close(descriptor)
                #else
                _ = Darwin.close(descriptor)
                #endif
                throw APITestError("connect() to port \(port) failed")
            }
        }

        func send(_ data: Data) throws {
            try data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
                var offset = 0
                while offset < buffer.count {
                    #if canImport(Glibc)
                    let sent = Glibc.send(descriptor, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                    #else
                    let sent = Darwin.send(descriptor, buffer.baseAddress! + offset, buffer.count - offset, 0)
                    #endif
                    guard sent > 0 else { throw APITestError("send() failed") }
                    offset += sent
                }
            }
        }

        /// Reads until the server closes the connection.
        func readToEnd() -> Data {
            var data = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count <= 0 { break }
                data.append(contentsOf: buffer[0..<count])
            }
            return data
        }

        func close() {
            #if canImport(Glibc)
            _ = Glibc.close(descriptor)
            #else
            _ = Darwin.close(descriptor)
            #endif
        }
    }

    /// An HTTP/1.1 request with `Connection: close`.
    static func request(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil) -> Data {
        let payload = body ?? json.map { (try? JSONSerialization.data(withJSONObject: $0)) ?? Data() } ?? Data()
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if !payload.isEmpty || method == "POST" {
            head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n"
        }
        var data = Data((head + "\r\n").utf8)
        data.append(payload)
        return data
    }

    /// A whole exchange on a fresh connection: the status code and body of the response.
    static func exchange(port: Int, _ request: Data) async throws -> (status: Int, body: Data) {
        try await onThread {
            let connection = try Connection(port: port)
            defer { connection.close() }
            try connection.send(request)
            let response = connection.readToEnd()
            guard let split = response.range(of: Data("\r\n\r\n".utf8)) else {
                throw APITestError("no HTTP response: \(String(decoding: response.prefix(200), as: UTF8.self))")
            }
            let head = String(decoding: response[..<split.lowerBound], as: UTF8.self)
            let parts = head.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, let status = Int(parts[1]) else { throw APITestError("bad status line: \(head.prefix(100))") }
            return (status, Data(response[split.upperBound...]))
        }
    }
}

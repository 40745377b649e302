import Compute
import Foundation
import Weights
import XCTest

final class ZZTimingScratch: XCTestCase {
    func testTiming() throws {
        let dir = try TemporaryDirectory()
        let n = 1 << 24
        let t = Tensor(shape: [n], values: (0..<n).map { Float($0 % 1000) * 0.01 })
        for p in [SafeTensorsWriter.Precision.float16, .float32] {
            let url = dir.file("big.safetensors")
            var start = Date()
            try SafeTensorsWriter.write(["x": t], precision: p, to: url)
            let w = Date().timeIntervalSince(start)
            let f = try SafeTensorsFile(contentsOf: url)
            _ = try f.tensor("x")
            start = Date()
            for _ in 0..<5 { _ = try f.tensor("x") }
            print("TIMING \(p): write \(w)s, read \(Date().timeIntervalSince(start) / 5 * 1e9 / Double(n)) ns/elem")
        }
        // bf16
        var bytes = safetensorsBytes(header: "{\"x\":{\"dtype\":\"BF16\",\"shape\":[\(n)],\"data_offsets\":[0,\(2*n)]}}", data: [UInt8](repeating: 0x3F, count: 2 * n))
        let url = try dir.write(bytes, to: "bf.safetensors"); bytes = []
        let f = try SafeTensorsFile(contentsOf: url)
        _ = try f.tensor("x")
        let start = Date()
        for _ in 0..<5 { _ = try f.tensor("x") }
        print("TIMING bf16 read \(Date().timeIntervalSince(start) / 5 * 1e9 / Double(n)) ns/elem")
    }
}

"""idem from Python: Debian's grpcio drives idemd through stubs generated
from proto/idem/v1/idempotency.proto. Run by ctest (python_client_e2e) with
/usr/bin/python3; starts its own idemd on the test database."""
import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from grpc_tools import protoc
import grpc

ARGS = None
pb = rpc = reflection_pb = reflection_rpc = None


TEST_PROTOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protos")


def generate_stubs(proto_root, out_dir):
    for root, proto in ((proto_root, "idem/v1/idempotency.proto"),
                        (TEST_PROTOS, "reflection_v1alpha/reflection.proto")):
        rc = protoc.main(["protoc", f"-I{root}", f"--python_out={out_dir}",
                          f"--grpc_python_out={out_dir}", os.path.join(root, proto)])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    sys.path.insert(0, out_dir)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pg_dir = os.environ["IDEM_TEST_PG_DIR"]
        url = f"postgresql:///idem_test?host={pg_dir}/socket&user=postgres"
        cls.address = f"127.0.0.1:{free_port()}"
        cls.idemd = subprocess.Popen(
            [os.environ["IDEM_TEST_IDEMD"], f"--listen={cls.address}", f"--postgres={url}"])
        channel = grpc.insecure_channel(cls.address)
        grpc.channel_ready_future(channel).result(timeout=15)
        cls.channel = channel
        cls.stub = rpc.IdempotencyStub(channel)

    @classmethod
    def tearDownClass(cls):
        cls.idemd.terminate()
        code = cls.idemd.wait(timeout=15)
        if code != 0:
            raise AssertionError(f"idemd exited with {code} on SIGTERM")

    def setUp(self):
        self.scope = f"test/python/{uuid.uuid4().hex}"

    def begin(self, key, body=b"charge 10 EUR", lease_seconds=None):
        req = pb.BeginRequest(scope=self.scope, key=key,
                              request_hash=hashlib.sha256(body).digest())
        if lease_seconds:
            req.lease_ttl.seconds = lease_seconds
        return self.stub.Begin(req, timeout=5)

    def test_begin_complete_replay(self):
        first = self.begin("order-1")
        self.assertEqual(first.outcome, pb.BeginResponse.ACQUIRED)
        self.assertGreater(first.lease_token, 0)
        done = self.stub.Complete(pb.CompleteRequest(
            scope=self.scope, key="order-1", lease_token=first.lease_token,
            response=b'{"id": "ch_1"}\x00', response_code=201,
            response_metadata={"content-type": "application/json"}), timeout=5)
        self.assertEqual(done.record.status, pb.Record.COMPLETED)
        replay = self.begin("order-1")
        self.assertEqual(replay.outcome, pb.BeginResponse.COMPLETED)
        self.assertEqual(replay.lease_token, 0)
        self.assertEqual(replay.record.response, b'{"id": "ch_1"}\x00')
        self.assertEqual(replay.record.response_code, 201)
        self.assertEqual(dict(replay.record.response_metadata),
                         {"content-type": "application/json"})
        got = self.stub.Get(pb.GetRequest(scope=self.scope, key="order-1"), timeout=5)
        self.assertEqual(got.record.response, b'{"id": "ch_1"}\x00')

    def test_mismatch_is_failed_precondition(self):
        self.begin("order-2")
        with self.assertRaises(grpc.RpcError) as e:
            self.begin("order-2", body=b"charge 99 EUR")
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("does not match", e.exception.details())

    def test_in_progress_then_lease_takeover(self):
        first = self.begin("order-3", lease_seconds=1)
        busy = self.begin("order-3")
        self.assertEqual(busy.outcome, pb.BeginResponse.IN_PROGRESS)
        self.assertGreater(busy.retry_after.ToTimedelta().total_seconds(), 0)
        time.sleep(1.2)
        second = self.begin("order-3")
        self.assertEqual(second.outcome, pb.BeginResponse.ACQUIRED)
        self.assertGreater(second.lease_token, first.lease_token)
        self.assertEqual(second.record.attempt, 2)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Complete(pb.CompleteRequest(
                scope=self.scope, key="order-3", lease_token=first.lease_token), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)

    def test_extend_lease_keeps_key_in_progress(self):
        first = self.begin("order-4", lease_seconds=1)
        self.assertEqual(first.outcome, pb.BeginResponse.ACQUIRED)
        req = pb.ExtendLeaseRequest(scope=self.scope, key="order-4",
                                    lease_token=first.lease_token)
        req.lease_ttl.seconds = 60
        extended = self.stub.ExtendLease(req, timeout=5)
        moved = (extended.record.locked_until.ToDatetime()
                 - first.record.locked_until.ToDatetime())
        self.assertGreater(moved.total_seconds(), 30)
        busy = self.begin("order-4")
        self.assertEqual(busy.outcome, pb.BeginResponse.IN_PROGRESS)
        self.assertGreater(busy.retry_after.ToTimedelta().total_seconds(), 30)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ExtendLease(pb.ExtendLeaseRequest(
                scope=self.scope, key="order-4", lease_token=first.lease_token + 1), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)

    def test_fail_retryable_frees_key_permanent_is_replayed(self):
        first = self.begin("order-5")
        failed = self.stub.Fail(pb.FailRequest(
            scope=self.scope, key="order-5", lease_token=first.lease_token,
            error="card network timeout", retryable=True), timeout=5)
        self.assertEqual(failed.record.status, pb.Record.FAILED)
        self.assertTrue(failed.record.retryable)
        second = self.begin("order-5")
        self.assertEqual(second.outcome, pb.BeginResponse.ACQUIRED)
        self.assertEqual(second.record.attempt, 2)
        self.assertGreater(second.lease_token, first.lease_token)
        self.stub.Fail(pb.FailRequest(
            scope=self.scope, key="order-5", lease_token=second.lease_token,
            error="card declined", retryable=False, response=b"declined\x00",
            response_code=402), timeout=5)
        replay = self.begin("order-5")
        self.assertEqual(replay.outcome, pb.BeginResponse.FAILED)
        self.assertEqual(replay.lease_token, 0)
        self.assertEqual(replay.record.error, "card declined")
        self.assertEqual(replay.record.response, b"declined\x00")
        self.assertEqual(replay.record.response_code, 402)
        self.assertFalse(replay.record.retryable)

    def test_unknown_key_is_not_found(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Get(pb.GetRequest(scope=self.scope, key="nobody"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_bad_input_is_invalid_argument(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Begin(pb.BeginRequest(scope="no spaces allowed", key="k",
                                            request_hash=b"h"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("scope", e.exception.details())

    def test_server_reflection_lists_the_service(self):
        stub = reflection_rpc.ServerReflectionStub(self.channel)
        request = reflection_pb.ServerReflectionRequest(list_services="")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = [s.name for s in responses[0].list_services_response.service]
        self.assertIn("idem.v1.Idempotency", names)
        self.assertIn("grpc.health.v1.Health", names)

    def test_server_reflection_describes_the_methods(self):
        # idemd registers the methods raw (bytes in, bytes out); reflection
        # still serves their file descriptor with the typed signatures.
        from google.protobuf import descriptor_pb2
        stub = reflection_rpc.ServerReflectionStub(self.channel)
        request = reflection_pb.ServerReflectionRequest(
            file_containing_symbol="idem.v1.Idempotency")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        files = responses[0].file_descriptor_response.file_descriptor_proto
        self.assertTrue(files, responses[0])
        descriptor = descriptor_pb2.FileDescriptorProto.FromString(files[0])
        service = [s for s in descriptor.service if s.name == "Idempotency"][0]
        methods = {m.name: (m.input_type, m.output_type) for m in service.method}
        self.assertEqual(methods["Begin"], (".idem.v1.BeginRequest", ".idem.v1.BeginResponse"))
        self.assertEqual(sorted(methods), ["BatchBegin", "Begin", "Complete", "ExtendLease",
                                           "Fail", "Get"])

    def test_bytes_that_are_not_a_request_are_invalid_argument(self):
        garbage = self.channel.unary_unary("/idem.v1.Idempotency/Begin")
        with self.assertRaises(grpc.RpcError) as e:
            garbage(b"\xde\xad\xbe\xef", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("idem.v1.BeginRequest", e.exception.details())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto_root", required=True)
    ARGS, rest = parser.parse_known_args()
    stubs = tempfile.mkdtemp(prefix="idem-py-")
    generate_stubs(ARGS.proto_root, stubs)
    from idem.v1 import idempotency_pb2 as pb  # noqa: E402
    from idem.v1 import idempotency_pb2_grpc as rpc  # noqa: E402
    from reflection_v1alpha import reflection_pb2 as reflection_pb  # noqa: E402
    from reflection_v1alpha import reflection_pb2_grpc as reflection_rpc  # noqa: E402
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)

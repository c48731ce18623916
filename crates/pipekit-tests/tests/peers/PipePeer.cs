// A C# peer for pipekit's interop tests: System.IO.Pipes on whichever runtime runs it
// (.NET Core, Mono, .NET on Windows). Built with Mono's mcs; see ci/peers/install.sh.
//
//   PipePeer echo-client NAME SIZE...       connect, then for each SIZE send SIZE bytes of a
//                                           pattern and check they come back (byte mode)
//   PipePeer echo-server NAME INSTANCES N   serve N clients, at most INSTANCES at once,
//                                           echoing bytes until each client closes
//   PipePeer msg-client NAME SIZE...        as echo-client, in message mode (Windows): each
//                                           SIZE is one message and its echo one message
//   PipePeer msg-server NAME N              serve N clients one after another in message
//                                           mode, echoing each message as one message
//   PipePeer connect-timeout NAME MS        Connect(MS) to a name nobody serves: prints
//                                           "timeout" when it times out
//
// Servers print "listening" once the first instance exists. Every failure exits non-zero
// with a message on stderr.
using System;
using System.IO;
using System.IO.Pipes;
using System.Threading;

static class PipePeer
{
    static byte[] Pattern(int len, int seed)
    {
        var data = new byte[len];
        for (int i = 0; i < len; i++)
            data[i] = (byte)(i * 31 + seed);
        return data;
    }

    static void ReadExactly(Stream s, byte[] buf)
    {
        int got = 0;
        while (got < buf.Length)
        {
            int n = s.Read(buf, got, buf.Length - got);
            if (n == 0)
                throw new IOException("EOF after " + got + " of " + buf.Length + " bytes");
            got += n;
        }
    }

    static byte[] ReadMessage(PipeStream s)
    {
        var all = new MemoryStream();
        var buf = new byte[4096];
        do
        {
            int n = s.Read(buf, 0, buf.Length);
            if (n == 0 && all.Length == 0)
                return null;
            all.Write(buf, 0, n);
        } while (!s.IsMessageComplete);
        return all.ToArray();
    }

    static void Check(byte[] want, byte[] got, string what)
    {
        if (got == null)
            throw new IOException(what + ": EOF instead of " + want.Length + " bytes");
        if (got.Length != want.Length)
            throw new IOException(what + ": " + got.Length + " bytes instead of " + want.Length);
        for (int i = 0; i < want.Length; i++)
            if (got[i] != want[i])
                throw new IOException(what + ": byte " + i + " differs");
    }

    static NamedPipeClientStream Connect(string name)
    {
        // Asynchronous: a read and a write may be in flight at once on Windows too.
        var pipe = new NamedPipeClientStream(".", name, PipeDirection.InOut, PipeOptions.Asynchronous);
        pipe.Connect(20000);
        return pipe;
    }

    static void EchoClient(string name, string[] sizes)
    {
        using (var pipe = Connect(name))
        {
            foreach (var arg in sizes)
            {
                int size = int.Parse(arg);
                var data = Pattern(size, size);
                // Written from another thread: the echo comes back while the rest is sent.
                var writer = new Thread(() => pipe.Write(data, 0, data.Length));
                writer.Start();
                var back = new byte[size];
                ReadExactly(pipe, back);
                writer.Join();
                Check(data, back, "echo of " + size + " bytes");
                Console.WriteLine("ok " + size);
            }
        }
    }

    static void MsgClient(string name, string[] sizes)
    {
        using (var pipe = Connect(name))
        {
            pipe.ReadMode = PipeTransmissionMode.Message;
            foreach (var arg in sizes)
            {
                int size = int.Parse(arg);
                var data = Pattern(size, size);
                pipe.Write(data, 0, data.Length);
                Check(data, ReadMessage(pipe), "message of " + size + " bytes");
                Console.WriteLine("ok " + size);
            }
        }
    }

    static void Echo(Stream pipe)
    {
        var buf = new byte[65536];
        int n;
        while ((n = pipe.Read(buf, 0, buf.Length)) > 0)
            pipe.Write(buf, 0, n);
    }

    static void EchoServer(string name, int instances, int clients)
    {
        var threads = new Thread[clients];
        Exception failure = null;
        // At most INSTANCES instances exist at once: making one more throws.
        var free = new SemaphoreSlim(instances);
        for (int c = 0; c < clients; c++)
        {
            free.Wait();
            var server = new NamedPipeServerStream(name, PipeDirection.InOut, instances,
                PipeTransmissionMode.Byte, PipeOptions.Asynchronous);
            if (c == 0)
                Console.WriteLine("listening");
            server.WaitForConnection();
            threads[c] = new Thread(() =>
            {
                try { Echo(server); }
                catch (Exception e) { failure = e; }
                finally { server.Dispose(); free.Release(); }
            });
            threads[c].Start();
        }
        foreach (var t in threads)
            t.Join();
        if (failure != null)
            throw failure;
    }

    static void MsgServer(string name, int clients)
    {
        for (int c = 0; c < clients; c++)
        {
            using (var server = new NamedPipeServerStream(name, PipeDirection.InOut, 1,
                PipeTransmissionMode.Message))
            {
                if (c == 0)
                    Console.WriteLine("listening");
                server.WaitForConnection();
                byte[] msg;
                while ((msg = ReadMessage(server)) != null)
                    server.Write(msg, 0, msg.Length);
            }
        }
    }

    static int Main(string[] args)
    {
        try
        {
            var rest = new string[Math.Max(0, args.Length - 2)];
            Array.Copy(args, 2, rest, 0, rest.Length);
            switch (args[0])
            {
                case "echo-client": EchoClient(args[1], rest); break;
                case "msg-client": MsgClient(args[1], rest); break;
                case "echo-server": EchoServer(args[1], int.Parse(args[2]), int.Parse(args[3])); break;
                case "msg-server": MsgServer(args[1], int.Parse(args[2])); break;
                case "connect-timeout":
                    try
                    {
                        using (var pipe = new NamedPipeClientStream(".", args[1], PipeDirection.InOut))
                            pipe.Connect(int.Parse(args[2]));
                        Console.Error.WriteLine("connected although nobody serves " + args[1]);
                        return 1;
                    }
                    catch (TimeoutException)
                    {
                        Console.WriteLine("timeout");
                    }
                    break;
                default:
                    Console.Error.WriteLine("unknown command " + args[0]);
                    return 2;
            }
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("PipePeer " + string.Join(" ", args) + ": " + e);
            return 1;
        }
    }
}

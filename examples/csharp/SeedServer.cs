// The C# server of the classic named-pipe recipe: a pipe named "test_pipe" (or the first
// argument), one client after another, every message answered with "OK".
//
//   mcs SeedServer.cs && mono SeedServer.exe            (or any .NET runtime)
//   pipekit send test_pipe --dialect dotnet hello       (a pipekit client)
using System;
using System.IO.Pipes;
using System.Text;

class SeedServer
{
    static void Main(string[] args)
    {
        string name = args.Length > 0 ? args[0] : "test_pipe";
        int clients = args.Length > 1 ? int.Parse(args[1]) : int.MaxValue;
        for (int c = 0; c < clients; c++)
        {
            using (var server = new NamedPipeServerStream(name, PipeDirection.InOut,
                NamedPipeServerStream.MaxAllowedServerInstances))
            {
                Console.WriteLine("Waiting for a client on " + name);
                server.WaitForConnection();
                var buffer = new byte[65535];
                int n;
                while ((n = server.Read(buffer, 0, buffer.Length)) > 0)
                {
                    Console.WriteLine("Received: " + Encoding.UTF8.GetString(buffer, 0, n));
                    var reply = Encoding.UTF8.GetBytes("OK");
                    server.Write(reply, 0, reply.Length);
                    server.Flush();
                }
                Console.WriteLine("Client disconnected");
            }
        }
    }
}

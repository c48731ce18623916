// The C# client of the classic named-pipe recipe: connects to "test_pipe" (or the first
// argument), sends "hello" and the counters 1 to 10, and prints each reply.
//
//   mcs SeedClient.cs && mono SeedClient.exe            (or any .NET runtime)
//   pipekit listen test_pipe --dialect dotnet --reply OK   (a pipekit server)
using System;
using System.IO.Pipes;
using System.Text;

class SeedClient
{
    static void Main(string[] args)
    {
        string name = args.Length > 0 ? args[0] : "test_pipe";
        using (var client = new NamedPipeClientStream(".", name, PipeDirection.InOut))
        {
            client.Connect(5000);
            var buffer = new byte[65535];
            for (int i = 0; i <= 10; i++)
            {
                var message = Encoding.UTF8.GetBytes(i == 0 ? "hello" : i.ToString());
                client.Write(message, 0, message.Length);
                client.Flush();
                int n = client.Read(buffer, 0, buffer.Length);
                Console.WriteLine("Reply: " + Encoding.UTF8.GetString(buffer, 0, n));
            }
        }
    }
}

return GpuRnn.Cli.App.Run(args, Console.Out, Console.Error);
